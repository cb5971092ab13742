"""KL schedules: the weight beta_t on the KL term at each point of training. (The free-bits
floor under the KL term is the objective's: `objective.free_bits`.)

`weight(epoch)` takes the fractional number of epochs done (epoch e, batch i of n:
e + i / n), so a schedule can move per epoch or per step; it depends on nothing else,
which is why a resumed run continues a schedule exactly. `warming_up(e)` says whether
epoch e still lies before the first epoch that trains at the full `beta`: an early
stopping callback does not count those (the VampPrior recipe's "patience counted after
the warm-up").
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod


class KLSchedule(ABC):
    """beta_t up to the target `beta`."""

    def __init__(self, beta: float = 1.0) -> None:
        if not 0 <= beta < math.inf:
            raise ValueError(f"beta must be >= 0 and finite, got {beta}")
        self.beta = beta

    @abstractmethod
    def weight(self, epoch: float) -> float:
        """beta_t after `epoch` (fractional) epochs of training."""

    def warming_up(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) comes before the full beta is first reached."""
        return False


class ConstantKL(KLSchedule):
    """beta_t = beta throughout: the ELBO at beta = 1, the beta-VAE otherwise."""

    def weight(self, epoch: float) -> float:
        return self.beta


class LinearWarmup(KLSchedule):
    """KL warm-up (Bowman et al. 2016; Sønderby et al. 2016), per epoch as in the VampPrior
    code (`utils/training.py`: beta = epoch / warmup with 1-based epochs, capped at 1):

        beta_e = beta * min(1, (e + 1) / warmup_epochs)   for the 0-based epoch e,

    constant within an epoch: with warmup_epochs = 100, 0.01 in the first epoch, 0.02 in
    the second, the full beta from the 100th (e = 99) on.
    """

    def __init__(self, beta: float = 1.0, warmup_epochs: int = 100) -> None:
        super().__init__(beta)
        if (
            isinstance(warmup_epochs, bool)
            or not isinstance(warmup_epochs, int)
            or warmup_epochs < 1
        ):
            raise ValueError(
                f"kl_schedule.warmup_epochs must be a positive integer, got {warmup_epochs!r}"
            )
        self.warmup_epochs = warmup_epochs

    def weight(self, epoch: float) -> float:
        return self.beta * min(1.0, (math.floor(epoch) + 1) / self.warmup_epochs)

    def warming_up(self, epoch: int) -> bool:
        return epoch + 1 < self.warmup_epochs


class CyclicalKL(KLSchedule):
    """Cyclical annealing (Fu et al. 2019, Eq. 6): training is cut into cycles of
    `cycle_epochs`; within each, beta_t rises linearly from 0 to beta over the first
    `ratio` of the cycle (R = 0.5 in the paper) and stays at beta for the rest. It moves
    per step: tau = ((epoch / cycle_epochs) mod 1), beta_t = beta * min(1, tau / ratio).
    """

    def __init__(
        self,
        beta: float = 1.0,
        cycle_epochs: float = 10,
        ratio: float = 0.5,
    ) -> None:
        super().__init__(beta)
        if not 0 < cycle_epochs < math.inf:
            raise ValueError(f"kl_schedule.cycle_epochs must be positive, got {cycle_epochs}")
        if not 0 < ratio <= 1:
            raise ValueError(f"kl_schedule.ratio must be in (0, 1], got {ratio}")
        self.cycle_epochs, self.ratio = cycle_epochs, ratio

    def weight(self, epoch: float) -> float:
        tau = (epoch / self.cycle_epochs) % 1.0
        return self.beta * min(1.0, tau / self.ratio)

    def warming_up(self, epoch: int) -> bool:
        # The first ramp ends at epoch cycle_epochs * ratio (fractional); the first epoch
        # at the full beta from its start is the next whole one. Only this first ramp holds
        # early stopping's count; later cycles' ramps do not.
        return epoch < math.ceil(self.cycle_epochs * self.ratio)

"""Early stopping on the validation ELBO that does not count while the KL warms up.

The VampPrior recipe (Tomczak & Welling 2018, `utils/perform_experiment.py` of their code)
stops after `patience` epochs without a better validation ELBO (beta = 1), but holds the
count at zero during the KL warm-up, when the ELBO of a model still trained at beta < 1
says little. Here "during the warm-up" is the model's own KL schedule's `warming_up(epoch)`:
the epochs before the full beta is first reached (none for a constant schedule). The best
value is still recorded in those epochs, as in the recipe.

Lightning saves the callback's state (count, best value) in every checkpoint and restores
it on resume, so a resumed run stops where the uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason


class WarmupEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, off while `patience` is None, held during a KL warm-up.

    It stops once `patience` validation epochs in a row have not improved on the best
    value by more than `min_delta` (the recipe's code stops after patience + 1).
    """

    def __init__(
        self,
        patience: int | None = None,
        monitor: str = "val/elbo",
        mode: str = "max",
        min_delta: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(
                f"callbacks.early_stopping.patience must be a positive integer or null (off), "
                f"got {patience!r}"
            )
        super().__init__(
            monitor=monitor, mode=mode, patience=patience or 0, min_delta=min_delta, **kwargs
        )
        self.active = patience is not None
        self._holding = False

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        if not self.active:
            return
        schedule = getattr(trainer.lightning_module, "kl_schedule", None)
        self._holding = schedule is not None and schedule.warming_up(trainer.current_epoch)
        super()._run_early_stopping_check(trainer)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if self._holding and bool(torch.isfinite(current)):  # a NaN still stops the run
            self.wait_count = 0
            self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
            return False, None
        return should_stop, reason

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The saved count and best value; the patience stays the one configured now."""
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience

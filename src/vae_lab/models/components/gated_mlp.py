"""The gated dense encoder and decoder of the VampPrior paper (Tomczak & Welling 2018).

Each hidden layer is a GatedDense unit, h(x) * sigmoid(g(x)) with h and g two linear maps
and no other activation (the gating of Dauphin et al. 2017, in the paper's code
`utils/nn.py`). The paper's MLP is 784-300-300-z and back (`hidden_sizes: [300, 300]`,
z = 40), with two details the config carries:

- `log_var_range`: the encoder's log-variance goes through Hardtanh(-6, 2), so sigma^2
  stays in [e^-6, e^2]; null leaves it free.
- `init: he_normal`: every linear weight drawn from N(0, 2 / fan_in) (He et al. 2015);
  biases keep PyTorch's default. `init: default` keeps PyTorch's for weights too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Independent

from vae_lab.models.components.conditioning import join
from vae_lab.models.components.gaussian import diagonal_gaussian

INITS = ("he_normal", "default")


class GatedDense(nn.Module):
    """h(x) * sigmoid(g(x)): a linear map whose every output has a learned gate."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.h, self.g = nn.Linear(n_in, n_out), nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def gated_stack(n_in: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    return nn.Sequential(*(GatedDense(a, b) for a, b in itertools.pairwise([n_in, *hidden_sizes])))


def log_var_clamp(log_var_range: Sequence[float] | None) -> nn.Module:
    """Hardtanh(low, high) on a log-variance (the VampPrior code's [-6, 2]); None: none."""
    if log_var_range is None:
        return nn.Identity()
    low, high = log_var_range
    if not low < high:
        raise ValueError(f"log_var_range must be [low, high] with low < high, got {log_var_range}")
    return nn.Hardtanh(low, high)


def initialize(module: nn.Module, init: str) -> None:
    """Apply `init` to every linear weight under `module`."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "default":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.in_features))


class GatedMLPEncoder(nn.Module):
    """x [and c] -> q(z|x, c): gated dense layers, then linear maps to mean and log-variance."""

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        hidden_sizes: Sequence[int] = (300, 300),
        condition_dim: int = 0,
        log_var_range: Sequence[float] | None = (-6.0, 2.0),
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        self.body = gated_stack(math.prod(input_shape) + condition_dim, hidden_sizes)
        self.mean = nn.Linear(hidden_sizes[-1], latent_dim)
        self.log_var = nn.Linear(hidden_sizes[-1], latent_dim)
        self.clamp = log_var_clamp(log_var_range)
        initialize(self, init)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Independent:
        h = self.body(join(x.flatten(1), c))  # (B, hidden)
        return diagonal_gaussian(self.mean(h), self.clamp(self.log_var(h)))


class GatedMLPDecoder(nn.Module):
    """z [and c] -> likelihood parameters (..., *output_shape): gated dense layers, then a
    linear map (Bernoulli logits; the paper's sigmoid is the likelihood's job here)."""

    def __init__(
        self,
        output_shape: Sequence[int],
        latent_dim: int,
        hidden_sizes: Sequence[int] = (300, 300),
        condition_dim: int = 0,
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.body = gated_stack(latent_dim + condition_dim, hidden_sizes)
        self.out = nn.Linear(hidden_sizes[-1], math.prod(output_shape))
        initialize(self, init)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.body(join(z, c))).unflatten(-1, self.output_shape)

"""Fully connected encoder and decoder (the article's architecture: 784-512-256-z and back)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Independent

from vae_lab.models.components.conditioning import join
from vae_lab.models.components.gaussian import diagonal_gaussian


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (B, *input_shape) [and a condition c (B, condition_dim)] -> q(z|x, c), a diagonal
    Gaussian over `latent_dim` dims. The condition joins the flattened pixels."""

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        hidden_sizes: Sequence[int] = (512, 256),
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.net = mlp([math.prod(input_shape) + condition_dim, *hidden_sizes, 2 * latent_dim])

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Independent:
        mean, log_var = self.net(join(x.flatten(1), c)).chunk(2, dim=-1)  # (B, D) each
        return diagonal_gaussian(mean, log_var)


class MLPDecoder(nn.Module):
    """z (..., latent_dim) [and c] -> likelihood parameters (..., *output_shape), e.g.
    Bernoulli logits. The condition joins z."""

    def __init__(
        self,
        output_shape: Sequence[int],
        latent_dim: int,
        hidden_sizes: Sequence[int] = (256, 512),
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.net = mlp([latent_dim + condition_dim, *hidden_sizes, math.prod(output_shape)])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(join(z, c)).unflatten(-1, self.output_shape)

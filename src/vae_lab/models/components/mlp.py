"""Fully connected encoder and decoder (the article's architecture: 784-512-256-z and back)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from vae_lab.models.components.gaussian import DiagonalGaussian


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (B, *input_shape) -> q(z|x), a diagonal Gaussian over `latent_dim` dims."""

    def __init__(
        self, input_shape: Sequence[int], latent_dim: int, hidden_sizes: Sequence[int] = (512, 256)
    ) -> None:
        super().__init__()
        self.net = mlp([math.prod(input_shape), *hidden_sizes, 2 * latent_dim])

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        mean, log_var = self.net(x.flatten(1)).chunk(2, dim=-1)  # (B, D) each
        return DiagonalGaussian(mean, log_var)


class MLPDecoder(nn.Module):
    """z (B, latent_dim) -> likelihood parameters (B, *input_shape), e.g. Bernoulli logits."""

    def __init__(
        self, input_shape: Sequence[int], latent_dim: int, hidden_sizes: Sequence[int] = (256, 512)
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = mlp([latent_dim, *hidden_sizes, math.prod(input_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, self.input_shape)

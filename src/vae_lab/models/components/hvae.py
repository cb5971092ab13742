"""The two-level VAE of Tomczak & Welling 2018 with gated dense layers (`model=hvae`).

As in their code (`jmtomczak/vae_vampprior`, `models/HVAE_2level.py`), with z2 the top
layer and z1 the bottom one (both 40 dims in the published runs):

- inference, q(z2|x) q(z1|x, z2): q(z2|x) is two GatedDense layers of 300 and a linear
  mean and log-variance; q(z1|x, z2) sends x through GatedDense(784, 300) and z2 through
  GatedDense(z2, 300), concatenates them, then GatedDense(600, 300), mean and log-variance;
- generation, p(z2) p(z1|z2) p(x|z1, z2): p(z2) is the configured prior; p(z1|z2) two
  GatedDense layers of 300, mean and log-variance (`GaussianConditional`, held by the
  model's `latents`, `hierarchical_prior.HierarchicalPrior`); p(x|z1, z2) sends z1 and z2
  each through GatedDense(., 300), concatenates them, then GatedDense(600, 300) and a
  linear map to the likelihood's parameters (Bernoulli logits: the paper's sigmoid is the
  likelihood's job here).

Every log-variance goes through Hardtanh(-6, 2) (`log_var_range`); every linear weight is
drawn He-normal (`init`), as in `gated_mlp`. The latents are one tensor, z = [z2, z1].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Independent

from vae_lab.models.components.gated_mlp import (
    GatedDense,
    gated_stack,
    initialize,
    log_var_clamp,
)
from vae_lab.models.components.gaussian import diagonal_gaussian
from vae_lab.models.components.latent_stack import LatentStack


class GaussianHead(nn.Module):
    """Features (..., n_in) -> N(mean, diag(exp(log_var))) over `latent_dim` dims: two linear
    maps, the log-variance through Hardtanh(low, high) when `log_var_range` is given."""

    def __init__(
        self, n_in: int, latent_dim: int, log_var_range: Sequence[float] | None = (-6.0, 2.0)
    ) -> None:
        super().__init__()
        self.mean = nn.Linear(n_in, latent_dim)
        self.log_var = nn.Linear(n_in, latent_dim)
        self.clamp = log_var_clamp(log_var_range)

    def forward(self, h: torch.Tensor) -> Independent:
        return diagonal_gaussian(self.mean(h), self.clamp(self.log_var(h)))


class GaussianConditional(nn.Module):
    """p(z_l | z_above): gated dense layers on the layers above (..., in_dim), then a
    Gaussian over `latent_dim` dims. The two-level models' p(z1|z2)."""

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (300, 300),
        log_var_range: Sequence[float] | None = (-6.0, 2.0),
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        self.in_dim, self.latent_dim = in_dim, latent_dim
        self.body = gated_stack(in_dim, hidden_sizes)
        self.head = GaussianHead(hidden_sizes[-1], latent_dim, log_var_range)
        initialize(self, init)

    def forward(self, z_above: torch.Tensor) -> Independent:
        return self.head(self.body(z_above))


class JointGaussian(nn.Module):
    """q(z1 | x, z2) from features of x (B, n_x) and z2 (..., B, latent_dim): z2 through a
    gated layer to `n_x` features, both concatenated, a gated layer to `joint_size`, then
    the Gaussian head. Shared by the MLP and conv encoders, which differ in how x is seen."""

    def __init__(
        self,
        n_x: int,
        z2_dim: int,
        z1_dim: int,
        joint_size: int,
        log_var_range: Sequence[float] | None,
    ) -> None:
        super().__init__()
        self.z2 = GatedDense(z2_dim, n_x)
        self.joint = GatedDense(2 * n_x, joint_size)
        self.head = GaussianHead(joint_size, z1_dim, log_var_range)

    def forward(self, x_features: torch.Tensor, z2: torch.Tensor) -> Independent:
        h_z = self.z2(z2)  # (..., B, n_x)
        h = torch.cat([x_features.expand_as(h_z), h_z], dim=-1)  # x's features for every draw
        return self.head(self.joint(h))


def two_level_posterior(
    top: Independent, x_features: Callable[[], torch.Tensor], q_z1: JointGaussian
) -> LatentStack:
    """The stack q(z2|x) q(z1|x, z2); x's features for q(z1|...) are computed when first
    needed (once), so encoding for the top layer alone (the VampPrior's pseudo-inputs)
    costs only q(z2|x)."""
    features = functools.cache(x_features)
    d2, d1 = top.event_shape[-1], q_z1.head.mean.out_features

    def q_z1_given(z2: torch.Tensor) -> Independent:
        return q_z1(features(), z2)

    return LatentStack(top, [q_z1_given], [d2, d1])


class HVAEEncoder(nn.Module):
    """x (B, *input_shape) -> q(z2|x) q(z1|x, z2), a `LatentStack` over [z2, z1].

    `latent_dim` is z2's size (the top layer, the one the prior sees), `z1_dim` z1's;
    `hidden_sizes` the gated layers of q(z2|x); `joint_size` the width of q(z1|x, z2)'s
    layers (x and z2 each to that many features, then the joint layer).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        z1_dim: int,
        hidden_sizes: Sequence[int] = (300, 300),
        joint_size: int = 300,
        log_var_range: Sequence[float] | None = (-6.0, 2.0),
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        n_pixels = math.prod(input_shape)
        self.q_z2 = nn.Sequential(
            gated_stack(n_pixels, hidden_sizes),
            GaussianHead(hidden_sizes[-1], latent_dim, log_var_range),
        )
        self.q_z1_x = GatedDense(n_pixels, joint_size)
        self.q_z1 = JointGaussian(joint_size, latent_dim, z1_dim, joint_size, log_var_range)
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> LatentStack:
        flat = x.flatten(1)  # (B, C * H * W)
        return two_level_posterior(self.q_z2(flat), functools.partial(self.q_z1_x, flat), self.q_z1)


class HVAEDecoder(nn.Module):
    """z = [z2, z1] (..., latent_dim + z1_dim) -> the likelihood's parameters
    (..., *output_shape): z1 and z2 each through a gated layer of `joint_size`,
    concatenated, a gated layer, a linear map."""

    def __init__(
        self,
        output_shape: Sequence[int],
        latent_dim: int,
        z1_dim: int,
        joint_size: int = 300,
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.dims = [latent_dim, z1_dim]
        self.p_z1 = GatedDense(z1_dim, joint_size)
        self.p_z2 = GatedDense(latent_dim, joint_size)
        self.joint = GatedDense(2 * joint_size, joint_size)
        self.out = nn.Linear(joint_size, math.prod(output_shape))
        initialize(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z2, z1 = z.split(self.dims, dim=-1)
        h = self.joint(torch.cat([self.p_z1(z1), self.p_z2(z2)], dim=-1))
        return self.out(h).unflatten(-1, self.output_shape)

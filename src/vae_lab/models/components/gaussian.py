"""The diagonal Gaussian q(z|x) = N(mean, diag(exp(log_var))) that every encoder returns."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


@dataclass
class DiagonalGaussian:
    """A batch of diagonal Gaussians; shapes (B, D). Densities sum over the D dims.

    Written out rather than taken from `torch.distributions` so that nothing validates
    arguments on the hot path (a host sync per step on a GPU) and the KL reads as maths.
    """

    mean: torch.Tensor
    log_var: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.log_var)

    def rsample(self, n: int | None = None) -> torch.Tensor:
        """z = mean + std * eps, eps ~ N(0, I): the reparameterization trick (Kingma & Welling
        2014, Sec. 2.4), so gradients flow to mean and log_var. Shape (B, D), or (n, B, D)."""
        shape = self.mean.shape if n is None else (n, *self.mean.shape)
        eps = torch.randn(shape, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x), summed over latent dims: shape z.shape[:-1]."""
        return -0.5 * (LOG_2PI + self.log_var + (z - self.mean) ** 2 / self.log_var.exp()).sum(-1)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form, per item, shape (B,).

        Kingma & Welling 2014, Appendix B: -KL = 1/2 sum_d (1 + log s_d^2 - m_d^2 - s_d^2).
        """
        return self.kl_per_dim().sum(-1)

    def kl_per_dim(self) -> torch.Tensor:
        """The terms of that sum, one per latent dim, shape (B, D): a dim whose KL stays
        near 0 for every x carries no information (posterior collapse)."""
        return 0.5 * (self.mean**2 + self.log_var.exp() - 1.0 - self.log_var)

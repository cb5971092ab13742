"""Priors p(z). A prior owns its KL term, so a prior without a closed form can estimate it."""

from __future__ import annotations

import torch
from torch import nn

from vae_lab.models.components.gaussian import LOG_2PI, DiagonalGaussian


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over `latent_dim` dims."""

    _device_anchor: torch.Tensor  # empty; follows the module's device and dtype

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def kl(self, posterior: DiagonalGaussian) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per item, closed form (Kingma & Welling 2014, App. B)."""
        return posterior.kl_to_standard_normal()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over latent dims."""
        return -0.5 * (LOG_2PI + z**2).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws, shape (n, latent_dim), on the prior's device."""
        anchor = self._device_anchor
        noise = torch.randn(n, self.latent_dim, generator=generator, device=anchor.device)
        return noise.to(anchor.dtype)

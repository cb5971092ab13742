"""A mixture-of-Gaussians prior: p(z) = 1/K sum_k N(z | m_k, diag(s_k^2)), the K means and
variances learned with the model (the "MoG prior" the VampPrior paper compares against,
Tomczak & Welling 2018, Sec. 3: equal weights)."""

from __future__ import annotations

import torch
from torch import nn

from vae_lab.models.components.mixture import MixturePrior


class MixtureOfGaussiansPrior(MixturePrior):
    """K learned diagonal Gaussians, equally weighted. The means start as draws from
    N(0, init_std^2 I), spread over where N(0, I) has its mass; the variances start at 1."""

    def __init__(self, latent_dim: int, components: int = 10, init_std: float = 1.0) -> None:
        super().__init__(latent_dim)
        if components < 1:
            raise ValueError(f"prior.components must be a positive integer, got {components}")
        self.means = nn.Parameter(torch.randn(components, latent_dim) * init_std)
        self.log_vars = nn.Parameter(torch.zeros(components, latent_dim))

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.means, self.log_vars

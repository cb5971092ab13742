"""What a training objective may ask of the model: the small interface it depends on.

`VAECore` (`vae_lab.models.core`), and so the LightningModule `VAE` built on it, has all
of it; an objective is typed against this Protocol and imports neither, so the arrows
point one way: the model -> its objective -> this interface.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch.distributions import Distribution

from vae_lab.models.components.prior import Prior
from vae_lab.models.terms import ELBOTerms, LogWeights


class VAEMaths(Protocol):
    """A VAE's bounds on prepared tensors: float images x (B, C, H, W) on the model's device
    and the condition c (B, dim) or None, in nats per image."""

    prior: Prior  # p(z): its KL to a posterior (`kl`, `kl_per_dim`, `kl_per_layer`)

    def posterior(self, x: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """q(z|x, c): batch (B,), event (D,); a diagonal Gaussian or a `LatentStack`."""
        ...

    def elbo_pass(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[ELBOTerms, Distribution]:
        """One reparameterized pass: the beta = 1 ELBO terms, and q(z|x, c)."""
        ...

    def log_weights(
        self, x: torch.Tensor, c: torch.Tensor | None, posterior: Distribution, n: int
    ) -> LogWeights:
        """log p(x|z_i), log p(z_i), log q(z_i|x) for n draws z_i ~ q(z|x): each (n, B)."""
        ...

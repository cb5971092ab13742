"""The named results of a VAE's passes, in nats, one entry per image (or per draw and image)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ELBOTerms(NamedTuple):
    """Per-image terms in nats, each of shape (B,), and the KL term split by latent layer."""

    elbo: torch.Tensor  # -(recon + kl), a lower bound on log p(x)
    recon: torch.Tensor  # -log p(x|z), the reconstruction negative log-likelihood
    kl: torch.Tensor  # KL(q(z|x) || p(z)): closed form, or a one-sample estimate
    kl_layers: torch.Tensor  # (B, L): the KL term of each latent layer, top first; sums to kl


class LogWeights(NamedTuple):
    """The parts of the importance weights w_i = p(x|z_i) p(z_i) / q(z_i|x) of n draws
    z_i ~ q(z|x): each (n, B), and the draws themselves (n, B, D). For a stack of latent
    layers, z_i is a draw of every layer and log p, log q sum over the layers."""

    z: torch.Tensor
    log_px_z: torch.Tensor
    log_pz: torch.Tensor
    log_qz: torch.Tensor

"""Training objectives: what the optimizer minimizes, given the model and one batch.

Each returns the scalar loss and the batch's beta = 1 ELBO terms (what is logged as
`train/elbo`, comparable across objectives). `beta` is the KL schedule's weight at this
step and `free_bits` its per-dimension floor (Kingma et al. 2016); an objective without
a KL term of its own (`has_kl_term = False`) cannot take a floor.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple

import torch

from vae_lab.models.terms import ELBOTerms

if TYPE_CHECKING:
    from vae_lab.models.vae import VAE


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor  # scalar, averaged over the batch
    terms: ELBOTerms  # per image, beta = 1


class Objective(ABC):
    """A training objective; one subclass and one YAML file under `configs/objective/`."""

    has_kl_term = True

    @abstractmethod
    def __call__(
        self,
        model: VAE,
        x: torch.Tensor,
        c: torch.Tensor | None,
        beta: float,
        free_bits: float = 0.0,
    ) -> ObjectiveOutput:
        """The loss on images x (B, C, H, W) with condition c (or None)."""


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """sum_d max(free_bits, E_batch[KL_d]), a scalar (Kingma et al. 2016, Eq. 15, with one
    group per dim): a dim whose average KL is under the floor adds the floor and gets no
    gradient, so the optimizer stops squeezing information out of it."""
    return kl_per_dim.mean(0).clamp_min(free_bits).sum()


class ELBO(Objective):
    """The (beta-)ELBO, E_q[log p(x|z)] - beta KL(q(z|x) || p(z)), one reparameterized
    sample (Kingma & Welling 2014; beta: Higgins et al. 2017)."""

    def __call__(
        self,
        model: VAE,
        x: torch.Tensor,
        c: torch.Tensor | None,
        beta: float,
        free_bits: float = 0.0,
    ) -> ObjectiveOutput:
        terms, posterior = model.elbo_pass(x, c)
        if free_bits > 0:
            per_dim = model.prior.kl_per_dim(posterior)
            if per_dim is None:
                raise ValueError(f"{type(model.prior).__name__} has no KL per dim to floor")
            return ObjectiveOutput(
                terms.recon.mean() + beta * free_bits_kl(per_dim, free_bits), terms
            )
        return ObjectiveOutput((terms.recon + beta * terms.kl).mean(), terms)


class IWAE(Objective):
    """The importance-weighted bound of Burda et al. 2016 (Eq. 8) as the training objective,

        L_k = E[log (1/k) sum_i w_i],  log w_i = log p(x|z_i) + beta (log p(z_i) - log q(z_i|x)),

    with z_1..z_k ~ q(z|x) reparameterized. beta = 1 is Burda et al.'s bound; a KL schedule
    tempers the prior-to-posterior ratio of each weight, and at k = 1 the loss is the
    beta-ELBO with its KL estimated from the same draw. The logged ELBO terms come from the
    first of the k draws.
    """

    has_kl_term = False

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"objective.k must be a positive integer, got {k!r}")
        self.k = k

    def __call__(
        self,
        model: VAE,
        x: torch.Tensor,
        c: torch.Tensor | None,
        beta: float,
        free_bits: float = 0.0,
    ) -> ObjectiveOutput:
        if free_bits > 0:
            raise ValueError("the IWAE objective has no KL term for free bits to floor")
        posterior = model.posterior(x, c)
        w = model.log_weights(x, c, posterior, self.k)  # each (k, B)
        log_w = w.log_px_z + beta * (w.log_pz - w.log_qz)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        recon = -w.log_px_z[0]
        kl = model.prior.kl(posterior, w.z[0])
        return ObjectiveOutput(-bound.mean(), ELBOTerms(elbo=-(recon + kl), recon=recon, kl=kl))

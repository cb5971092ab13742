"""Training objectives: what the optimizer minimizes, given the model and one batch.

Each returns the scalar loss and the batch's beta = 1 ELBO terms (what is logged as
`train/elbo`, comparable across objectives). `beta` is the KL schedule's weight at this
step. `free_bits` (`objective.free_bits`) is the objective's own per-dimension floor under
its KL term (Kingma et al. 2016); an objective without a KL term of its own
(`has_kl_term = False`) cannot take one. The model is seen through the small interface
`vae_lab.models.interface.VAEMaths` (posterior, one ELBO pass, log-weights, prior).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from vae_lab.models.interface import VAEMaths
from vae_lab.models.terms import ELBOTerms


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor  # scalar, averaged over the batch
    terms: ELBOTerms  # per image, beta = 1


class Objective(ABC):
    """A training objective; one subclass and one YAML file under `configs/objective/`.

    `free_bits`: the per-dimension KL floor in nats (0: off), for an objective that has a
    KL term of its own (`has_kl_term`) and applies it.
    """

    has_kl_term = True
    free_bits = 0.0

    def __init__(self, free_bits: float = 0.0) -> None:
        if not 0 <= free_bits < math.inf:
            raise ValueError(f"objective.free_bits must be >= 0 and finite, got {free_bits}")
        if free_bits > 0 and not self.has_kl_term:
            raise ValueError(
                f"the {type(self).__name__} objective has no KL term for free bits to floor"
            )
        self.free_bits = free_bits

    @abstractmethod
    def __call__(
        self, model: VAEMaths, x: torch.Tensor, c: torch.Tensor | None, beta: float
    ) -> ObjectiveOutput:
        """The loss on images x (B, C, H, W) with condition c (or None), at KL weight beta."""


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """sum_d max(free_bits, E_batch[KL_d]), a scalar (Kingma et al. 2016, Eq. 15, with one
    group per dim): a dim whose average KL is under the floor adds the floor and gets no
    gradient, so the optimizer stops squeezing information out of it."""
    return kl_per_dim.mean(0).clamp_min(free_bits).sum()


class ELBO(Objective):
    """The (beta-)ELBO, E_q[log p(x|z)] - beta KL(q(z|x) || p(z)), one reparameterized
    sample (Kingma & Welling 2014; beta: Higgins et al. 2017); with `free_bits` > 0 the KL
    term is `free_bits_kl` of the prior's KL per dim."""

    def __call__(
        self, model: VAEMaths, x: torch.Tensor, c: torch.Tensor | None, beta: float
    ) -> ObjectiveOutput:
        terms, posterior = model.elbo_pass(x, c)
        free_bits = self.free_bits
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

    def __init__(self, k: int = 5, free_bits: float = 0.0) -> None:
        super().__init__(free_bits)  # only 0: there is no KL term to floor
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"objective.k must be a positive integer, got {k!r}")
        self.k = k

    def __call__(
        self, model: VAEMaths, x: torch.Tensor, c: torch.Tensor | None, beta: float
    ) -> ObjectiveOutput:
        posterior = model.posterior(x, c)
        w = model.log_weights(x, c, posterior, self.k)  # each (k, B)
        log_w = w.log_px_z + beta * (w.log_pz - w.log_qz)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        recon = -w.log_px_z[0]
        kl_layers = model.prior.kl_per_layer(posterior, w.z[0])  # (B, L)
        kl = kl_layers.sum(-1)
        return ObjectiveOutput(-bound.mean(), ELBOTerms(-(recon + kl), recon, kl, kl_layers))

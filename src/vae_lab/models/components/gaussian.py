"""The diagonal Gaussian q(z|x) = N(mean, diag(exp(log_var))) that every encoder returns.

It is a `torch.distributions` object: `Independent(Normal(mean, std), 1)`, so `rsample`,
`log_prob` (summed over the D latent dims) and `kl_divergence` come from torch. Argument
validation is off (`validate_args=False`): its checks read tensors back to the host, a
sync per step on a GPU. It replaced a hand-written Gaussian that was no faster
(docs/performance.md, "Measurements behind the code's defaults").
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Independent, Normal, kl_divergence

LOG_2PI = math.log(2 * math.pi)

Posterior = Independent  # q(z|x): batch shape (B,), event shape (D,)


def diagonal_gaussian(mean: torch.Tensor, log_var: torch.Tensor) -> Independent:
    """N(mean, diag(exp(log_var))) over the last dim; shapes (..., D)."""
    std = torch.exp(0.5 * log_var)
    return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


def diagonal(q: Distribution) -> Independent:
    """q itself, checked to be a diagonal Gaussian (`Independent` over a `Normal`): the
    posterior of a single latent layer, what the closed-form KL and the mixtures read."""
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
        return q
    raise TypeError(
        f"expected a diagonal Gaussian posterior (Independent(Normal)), got {type(q).__name__}; "
        "a model with a stack of latent layers needs its prior wrapped by the model's "
        "`latents` (model=hvae, conv_hvae)"
    )


def log_variance(q: Independent) -> torch.Tensor:
    """log sigma^2 of each dim of a diagonal Gaussian, shape (..., D)."""
    return 2 * torch.log(q.base_dist.scale)


def standard_normal_kl_per_dim(q: Independent) -> torch.Tensor:
    """KL(q_d || N(0, 1)) for each latent dim d, in closed form, shape (..., D).

    Kingma & Welling 2014, Appendix B: -KL = 1/2 sum_d (1 + log s_d^2 - m_d^2 - s_d^2). A
    dim whose KL stays near 0 for every x carries no information (posterior collapse).
    """
    loc = q.base_dist.loc
    zero = torch.zeros((), dtype=loc.dtype, device=loc.device)
    return kl_divergence(q.base_dist, Normal(zero, zero + 1.0, validate_args=False))


def concatenate(parts: list[Independent]) -> Independent:
    """One diagonal Gaussian from several along the batch dim (e.g. encoded in chunks)."""
    loc = torch.cat([p.base_dist.loc for p in parts])
    scale = torch.cat([p.base_dist.scale for p in parts])
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)

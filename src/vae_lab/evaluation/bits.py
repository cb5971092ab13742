"""Bits per dim of the 8-bit images: one yardstick for every likelihood that is a distribution.

Fashion-MNIST pixels are integers x in {0, ..., 255}; models see x / 255 in [0, 1]. Three
cases, by what the likelihood is over 8-bit images (`Likelihood.eight_bit`):

- "levels", a probability mass over the 256 levels (the discretized logistic): P(x) is the
  likelihood itself, and bpd_8bit = -log2 P(x) / D through the importance-weighted bound.
- "density", a density p on [0, 1]^D (Gaussians, continuous Bernoulli): uniform
  dequantization (Theis, van den Oord & Bethge 2016, Sec. 3.1). With y = (x + u) / 256,
  u ~ U[0, 1)^D, the bin of x is a cube of volume 256^-D, and by Jensen's inequality

      log P(x) = log 256^-D E_u[p(y)]  >=  E_u[log p(y)] - D log 256,

  so  bpd_8bit(x) <= -E_u[log2 p(y)] / D + 8.  Each image gets one draw of u (averaged over
  the test set, an unbiased estimate of the expectation), and log p(y) is itself replaced by
  its importance-weighted lower bound L_k(y), which keeps the inequality. Mass the density
  puts outside [0, 1] (a Gaussian's tails) is lost to every bin: the bound is looser for
  it, never wrong. Evaluating p at bin centres instead of drawing u would not be a bound.
- "none" (the Bernoulli on continuous pixels, a cross-entropy, not a normalized
  distribution): not applicable, and said why.

Binarized data (0/1 pixels) is a different data set: there a likelihood that is a mass
gives `bpd` over the 0/1 pixels, and bpd_8bit does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from vae_lab.models.components.likelihoods import Likelihood, bits_per_dim

LEVELS = 256
BITS = math.log2(LEVELS)  # 8: -log2 of a bin's volume, per pixel

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]  # images (B, C, H, W) -> (B,) nats


def is_binarized(config: Mapping[str, Any] | None) -> bool:
    """Whether a run's config trained on binarized pixels (`data.binarize` other than none)."""
    data = (config or {}).get("data") or {}
    return str(data.get("binarize", "none")) != "none"


def levels(x: torch.Tensor) -> torch.Tensor:
    """Pixels k / 255 in [0, 1] -> their 8-bit levels k, as floats of x's dtype."""
    return torch.round(x * (LEVELS - 1))


def dequantize(levels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = (x + u) / 256 with u ~ U[0, 1) per pixel: a point of the bin of each level x."""
    u = torch.rand(levels.shape, generator=generator, device=levels.device, dtype=levels.dtype)
    return (levels + u) / LEVELS


def dequantized_bpd(log_density: torch.Tensor, dims: int) -> torch.Tensor:
    """The bound -log2 p(y) / D + 8 on bits/dim of the 8-bit image, per image."""
    return bits_per_dim(-log_density, dims) + BITS


def not_applicable(likelihood: Likelihood, binarized: bool) -> dict[str, str]:
    """Why `bpd` and/or `bpd_8bit` are not reported for this likelihood and data, by name."""
    name = type(likelihood).__name__
    reasons = {}
    if binarized:
        reasons["bpd_8bit"] = (
            "the model was trained on binarized images (data=binarized), a different data set "
            "from the 8-bit images; its figure is bpd, over 0/1 pixels"
        )
        if not likelihood.discrete:
            reasons["bpd"] = f"{name} is a density, not a probability of the 0/1 pixels"
        return reasons
    reasons["bpd"] = (
        "bpd is for binarized data (data=binarized, 0/1 pixels, a different data set); "
        "on 8-bit pixels the figure is bpd_8bit"
    )
    if likelihood.eight_bit == "none":
        reasons["bpd_8bit"] = (
            f"{name} on continuous pixels is not a normalized distribution over 8-bit images "
            "(a cross-entropy, not a code length); use likelihood=logistic, "
            "continuous_bernoulli, gaussian or gaussian_learned, or data=binarized for bpd"
        )
    return reasons


def bits_per_dim_of(
    likelihood: Likelihood,
    x: torch.Tensor,
    iw_ll: torch.Tensor,
    iw_log_likelihood: LogLikelihood,
    binarized: bool,
) -> dict[str, torch.Tensor]:
    """`bpd` and/or `bpd_8bit` per image, shape (B,), where they apply (see the module doc).

    x: the batch in [0, 1] (levels / 255, or 0/1 when binarized); iw_ll: its
    importance-weighted bound L_k, (B,) nats; iw_log_likelihood: the same bound for other
    images, called on the dequantized batch when the likelihood is a density.
    """
    dims = x[0].numel()
    applies = not_applicable(likelihood, binarized).keys()
    bits = {}
    if "bpd" not in applies:
        bits["bpd"] = bits_per_dim(-iw_ll, dims)
    if "bpd_8bit" not in applies:
        if likelihood.eight_bit == "levels":
            bits["bpd_8bit"] = bits_per_dim(-iw_ll, dims)  # exact: P(x) is the likelihood
        else:
            bits["bpd_8bit"] = dequantized_bpd(iw_log_likelihood(dequantize(levels(x))), dims)
    return bits

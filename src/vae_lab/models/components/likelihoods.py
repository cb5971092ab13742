"""Likelihoods p(x|z): how decoder output becomes a log-density and an image.

A likelihood says how many numbers it needs per pixel (`params_per_pixel`, P); the
builder asks the decoder for that many (`output_shape` = (C * P, H, W) for C x H x W
images), so a likelihood with a per-pixel scale, or a mixture, needs no change to any
network. Each takes the decoder's output `params` of shape (B, C * P, H, W) (or
(K, B, C * P, H, W) for K samples of z) and sums log-densities over pixels, returning
nats per image.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
EightBit = Literal["density", "levels", "none"]


def bits_per_dim(nll: torch.Tensor, dims: int) -> torch.Tensor:
    """Nats per image -> bits per pixel: nll / (dims * ln 2). Meaningful for discrete data
    only (a density's -log p of continuous pixels is not a code length)."""
    return nll / (dims * math.log(2))


def is_binary(x: torch.Tensor) -> bool:
    """Whether every pixel is 0 or 1: the data a probability mass over {0, 1}^D scores, so
    its -log p is a code length that `bits_per_dim` may convert (binarized data only)."""
    return bool(((x == 0) | (x == 1)).all())


def float32_or_wider(values: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 decoder output (16-mixed, bf16-mixed) as float32; other dtypes as they are.
    The likelihoods score in float32 at least: their products, reciprocals and far-off
    edges leave half precision's range, and a sum over 784 pixels would round in it."""
    return values.float() if values.dtype in (torch.float16, torch.bfloat16) else values


def sum_of_logs(values: torch.Tensor, group: int = 64) -> torch.Tensor:
    """sum_p log v_p over the last dim, for v_p in [1/2, 1], with one log per `group` values.

    The last dim is folded in half (its halves multiplied) while it is even and each
    product holds at most `group` values; the logs of those products are summed. A product
    of 64 values of at least 1/2 is at least 2^-64, far from float32's smallest normal
    2^-126, and each multiply adds a relative rounding error of at most 2^-24, so the sum
    moves by about 6e-8 nats a value (5e-5 for 784 pixels) - the size of the rounding in
    the sum itself. For 784 pixels: 4 folds, products of 16, 49 logs a row.
    """
    n = 1
    while values.shape[-1] % 2 == 0 and 2 * n <= group:
        half = values.shape[-1] // 2
        values = values[..., :half] * values[..., half:]
        n *= 2
    return values.log().sum(-1)


class Likelihood(nn.Module, ABC):
    """log p(x|z) from decoder output, and the image it stands for."""

    # Decoder outputs per pixel, stacked along the channel dim: (C * params_per_pixel, H, W).
    # A subclass whose count depends on its arguments sets it in __init__.
    params_per_pixel: int = 1
    discrete: bool = False  # a probability mass (so -log p is a code length), not a density
    # What it is over 8-bit images, for `bpd_8bit` (vae_lab.evaluation.bits): "density", a
    # density on [0, 1] per pixel (dequantized); "levels", a mass over the 256 levels (exact);
    # "none", neither (no bits/dim of 8-bit images).
    eight_bit: EightBit = "none"

    @abstractmethod
    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels, shape params.shape[:-3]."""

    @abstractmethod
    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z]: the image shown for a decoded z, shape (..., C, H, W)."""

    @abstractmethod
    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """x ~ p(x|z): pixels drawn from the likelihood, shape (..., C, H, W)."""


class Bernoulli(Likelihood):
    """Pixels as independent Bernoulli variables on logits: log p = -BCE(logits, x).

    Exact for binarized data. On continuous x in [0, 1] it is the usual cross-entropy
    surrogate, not a normalized density (Loaiza-Ganem & Cunningham 2019).
    """

    discrete = True

    def __init__(self, min_prob: float = 0.0) -> None:
        super().__init__()
        if not 0 <= min_prob < 0.5:
            raise ValueError(f"likelihood.min_prob must be in [0, 0.5), got {min_prob}")
        # Probabilities kept in [min_prob, 1 - min_prob], i.e. logits within +-logit(1 -
        # min_prob), as the VampPrior code clamps its decoder's means (1e-5 there): each
        # pixel then costs at most -log(min_prob) nats. 0: no clamp.
        self.max_logit = math.log((1 - min_prob) / min_prob) if min_prob > 0 else None

    def _logits(self, params: torch.Tensor) -> torch.Tensor:
        if self.max_logit is None:
            return params
        return params.clamp(-self.max_logit, self.max_logit)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|l) = sum_p [x_p l_p - softplus(l_p)] for logits l (log sigmoid(l) = l -
        softplus(l), log(1 - sigmoid(l)) = -softplus(l)).

        Evaluated as sum_p (x_p - 1/2) l_p - 1/2 sum_p |l_p| + sum_p log sigmoid(|l_p|),
        because softplus(l) = (l + |l|) / 2 - log sigmoid(|l|): for l >= 0, log(1 + e^l) =
        l + log(1 + e^-l); for l < 0 it is log(1 + e^-|l|) itself. It is exact for any
        logit (no e^l is formed, so nothing overflows), and its one transcendental pass is
        a sigmoid, in place, whose logs are taken a group of pixels at a time
        (`sum_of_logs`). The importance-weighted bound spends most of its time outside the
        decoder here, and this form is faster than `x . l - sum softplus(l)`
        (docs/performance.md, "Measurements behind the code's defaults"). x (B, P)
        broadcasts over the k samples of the bound without being copied.
        """
        # fp16 would flush the products of sigmoids to 0 (2^-64 < its smallest subnormal
        # 2^-24): float32 throughout.
        logits = float32_or_wider(self._logits(params).flatten(-3))  # (..., B, P)
        data = x.flatten(-3).to(logits.dtype)  # (B, P)
        magnitude = logits.abs()
        half_abs = 0.5 * magnitude.sum(-1)
        log_sigmoid = sum_of_logs(magnitude.sigmoid_())  # sigmoid(|l|) in [1/2, 1)
        return (logits * (data - 0.5)).sum(-1) - half_abs + log_sigmoid

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._logits(params))

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(self.mean(params))


class _GaussianPixels(Likelihood):
    """Pixels as independent N(mean, sigma^2), the mean from the decoder, sigma per subclass."""

    eight_bit: EightBit = "density"  # on R: the mass it puts outside [0, 1] is simply lost

    @abstractmethod
    def log_sigma(self) -> torch.Tensor:
        """log sigma, a scalar tensor."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """sum_p log N(x_p; m_p, sigma^2) = -||x - m||^2 / (2 sigma^2) - P (log sigma +
        log(2 pi) / 2): the constant is taken out of the sum over the P pixels, which leaves
        a difference and a dot product of it with itself."""
        log_sigma = self.log_sigma()
        diff = (x - params).flatten(-3)  # (..., P)
        squares = torch.linalg.vecdot(diff, diff)
        return -0.5 * squares * torch.exp(-2 * log_sigma) - diff.shape[-1] * (
            log_sigma + HALF_LOG_2PI
        )

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.clamp(0.0, 1.0)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(params) * self.log_sigma().exp()
        return (params + noise).clamp(0.0, 1.0)


class Gaussian(_GaussianPixels):
    """Gaussian with a fixed sigma: -log p = ||x - mean||^2 / (2 sigma^2) + const.

    This is squared error, the article's choice, and why its samples look blurry: the
    optimum under squared error is the average of all plausible images.
    """

    fixed_log_sigma: torch.Tensor

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"likelihood.sigma must be positive, got {sigma}")
        self.register_buffer("fixed_log_sigma", torch.tensor(math.log(sigma)))

    def log_sigma(self) -> torch.Tensor:
        return self.fixed_log_sigma


class GaussianLearnedSigma(_GaussianPixels):
    """Gaussian with one sigma shared by all pixels and learned with the model.

    The calibrated decoder of Rybkin et al. 2021 ("sigma-VAE"): learning sigma sets the
    balance between reconstruction and KL that a fixed sigma (or beta) would fix by hand.
    sigma is kept above `min_sigma`, since on [0, 1] data the density is unbounded as
    sigma -> 0.
    """

    def __init__(self, sigma: float = 1.0, min_sigma: float = 1e-3) -> None:
        super().__init__()
        if not 0 < min_sigma < sigma:
            raise ValueError(f"likelihood.min_sigma must be in (0, sigma), got {min_sigma}")
        self.min_log_sigma = math.log(min_sigma)
        # Stored so that log_sigma() starts exactly at log(sigma): inverse of the soft floor.
        start = math.log(math.expm1(math.log(sigma) - self.min_log_sigma))
        self.raw_log_sigma = nn.Parameter(torch.tensor(start))

    def log_sigma(self) -> torch.Tensor:
        # Soft floor: min + softplus(raw) keeps a gradient everywhere, unlike clamp.
        return self.min_log_sigma + F.softplus(self.raw_log_sigma)


class GaussianPerPixelSigma(Likelihood):
    """Gaussian with a mean and a sigma for every pixel, both from the decoder.

    The decoder gives two numbers per pixel (`params_per_pixel = 2`): the mean m_p in the
    first C channels and an unconstrained r_p in the last C, with

        log sigma_p = log min_sigma + softplus(r_p + r_0),

    the soft floor of `GaussianLearnedSigma` per pixel (the density on [0, 1] is unbounded
    as sigma -> 0), r_0 chosen so that r_p = 0 gives sigma_p = `sigma`: a decoder that
    starts near 0 starts near sigma. The Gaussian MLP decoder of Kingma & Welling 2014
    (Appendix C.2) likewise outputs a mean and a log-variance per dimension.
    """

    params_per_pixel = 2
    eight_bit: EightBit = "density"  # on R: the mass it puts outside [0, 1] is simply lost

    def __init__(self, sigma: float = 1.0, min_sigma: float = 1e-3) -> None:
        super().__init__()
        if not 0 < min_sigma < sigma:
            raise ValueError(f"likelihood.min_sigma must be in (0, sigma), got {min_sigma}")
        self.min_log_sigma = math.log(min_sigma)
        self.offset = math.log(math.expm1(math.log(sigma) - self.min_log_sigma))  # r_0

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log sigma), each (..., C, H, W), from decoder output (..., 2C, H, W)."""
        mean, raw = params.chunk(2, dim=-3)
        return mean, self.min_log_sigma + F.softplus(raw + self.offset)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """sum_p log N(x_p; m_p, sigma_p^2) = -sum_p [(x_p - m_p)^2 / (2 sigma_p^2)
        + log sigma_p + log(2 pi) / 2]; scored in float32 at least (1 / sigma^2 of half
        precision output would overflow)."""
        mean, log_sigma = self.split(float32_or_wider(params))
        z = (x.to(mean.dtype) - mean) * torch.exp(-log_sigma)  # (..., C, H, W)
        return -(0.5 * z.square() + log_sigma + HALF_LOG_2PI).flatten(-3).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.split(params)[0].clamp(0.0, 1.0)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        mean, log_sigma = self.split(params)
        return (mean + torch.randn_like(mean) * log_sigma.exp()).clamp(0.0, 1.0)

"""The continuous Bernoulli: the Bernoulli's cross-entropy made a density on [0, 1].

Loaiza-Ganem & Cunningham 2019: p(x | lam) = C(lam) lam^x (1 - lam)^(1 - x) for x in [0, 1],
with C(lam) = 2 artanh(1 - 2 lam) / (1 - 2 lam) and C(1/2) = 2. The Bernoulli used on
continuous pixels is this without C, so not normalized; with it, -log p is a density's, and
bits/dim of the 8-bit images follow by dequantization (vae_lab.evaluation.bits).

Written in the logit l = log(lam / (1 - lam)), it is an exponential family on [0, 1] with
natural parameter l, since lam^x (1 - lam)^(1 - x) = (1 - lam) e^(l x):

    p(x | l) = e^(l x) / Z(l),   Z(l) = int_0^1 e^(l x) dx = (e^l - 1) / l,   Z(0) = 1,

and log Z(l) = max(l, 0) + log((1 - e^-|l|) / |l|) (for l > 0, factor e^l out of e^l - 1;
for l < 0, Z(l) = (1 - e^-|l|) / |l| as it stands). `expm1` gives 1 - e^-|l| to full
relative precision at any |l|, so log Z is exact for every logit with no Taylor patch;
`torch.distributions.ContinuousBernoulli` works from lam = sigmoid(l) instead, clamped to
[eps, 1 - eps], and loses C beyond |l| = 15.94 in float32. The gradient of log Z is the
mean, d log Z / dl = E[x]; draws invert the CDF F(x) = (e^(l x) - 1) / (e^l - 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_lab.models.components.likelihoods import EightBit, Likelihood, float32_or_wider

# Below |l| = 1/2 the mean's closed form, 1 / (1 - e^-l) - 1 / l, is a difference of two
# numbers near 1 / l: its Taylor series is used there instead (the first term left out,
# 5 l^9 / 239500800, is 4e-11 at l = 1/2; the closed form's float32 rounding there is
# about 2^-24 / l = 1.2e-7).
SERIES_BELOW = 0.5
TINY = 1e-30  # |l| is clamped to this before dividing by it: (1 - e^-a) / a = 1 exactly
# logit(1 - 2^-23): where torch's float32 class stops (it clamps sigmoid(l) to [eps, 1 - eps]).
TORCH_FLOAT32_LOGIT = math.log((1 - 2**-23) / 2**-23)  # 15.94


def log_normalizer_terms(logits: torch.Tensor) -> torch.Tensor:
    """log Z(l) per logit, elementwise (see the module docstring), with no gradient."""
    magnitude = logits.abs().clamp_min_(TINY)  # a = |l|
    ratio = torch.expm1(-magnitude).div_(magnitude).neg_()  # (1 - e^-a) / a in (0, 1]
    return ratio.log_().add_(logits.clamp_min(0.0))


def mean_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """E[x | l] = d log Z / dl = 1 / (1 - e^-l) - 1 / l, and 1/2 at l = 0.

    Near 0 the series 1/2 + l/12 - l^3/720 + l^5/30240 - l^7/1209600 (from x / (e^x - 1)
    = sum B_n x^n / n!, the Bernoulli numbers); elsewhere the closed form, evaluated at a stand-in
    logit where the series is used, so that both branches and their gradients stay finite.
    """
    small = logits.abs() < SERIES_BELOW
    square = logits * logits
    series = 0.5 + logits * (1 / 12 - square * (1 / 720 - square * (1 / 30240 - square / 1209600)))
    safe = logits.masked_fill(small, 1.0)
    closed = 1 / -torch.expm1(-safe) - 1 / safe
    return torch.where(small, series, closed)


class _LogNormalizerSum(torch.autograd.Function):
    """sum_p log Z(l_p) over the last dim, with the gradient E[x | l_p] written out.

    Autograd through log((1 - e^-a) / a) differences numbers near 1 / a as a -> 0 (1e-4
    off at l = 1e-3, measured in float32) and loses the gradient at l = 0, where |l| is
    clamped; the mean is the exact gradient everywhere."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits)
        return log_normalizer_terms(logits).sum(-1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (logits,) = ctx.saved_tensors
        return grad.unsqueeze(-1) * mean_from_logits(logits)


class ContinuousBernoulli(Likelihood):
    """Pixels as independent continuous Bernoullis on logits (the decoder's output).

    `max_logit` bounds |l|, as `GaussianLearnedSigma`'s min_sigma bounds sigma, and for the
    same reason: on [0, 1] pixels with exact zeros (Fashion-MNIST's background) the density
    is unbounded, p(0 | l) = |l| / (1 - e^-|l|) for l < 0, so training pushes those logits
    to -inf. The default, 15.94, is where torch's float32 `ContinuousBernoulli` (the
    authors' implementation) stops: the density at 0 is then at most 15.94, as it was in
    that class, but normalized. null: no bound, the exact density at every logit
    (docs/bits_and_fid.md measures what that does to bpd_8bit).
    """

    eight_bit: EightBit = "density"

    def __init__(self, max_logit: float | None = TORCH_FLOAT32_LOGIT) -> None:
        super().__init__()
        if max_logit is not None and not max_logit > 0:
            raise ValueError(f"likelihood.max_logit must be positive or null, got {max_logit}")
        self.max_logit = max_logit

    def _logits(self, params: torch.Tensor) -> torch.Tensor:
        """The logits in float32 or wider (e^-|l| and 1/|l| leave half precision's range),
        clamped to +-`max_logit`. Past the bound the gradient is 0, as for the Bernoulli's
        `min_prob`. Passing it straight through instead was tried: a background pixel's
        gradient there, -E[x | -15.94] = -0.063, never fades (the clamped value does not
        move), and its logit ran off until the default MLP's loss was inf at step 73."""
        logits = float32_or_wider(params)
        if self.max_logit is None:
            return logits
        return logits.clamp(-self.max_logit, self.max_logit)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | l) = sum_p [l_p x_p - log Z(l_p)]; x (B, C, H, W) broadcasts over the
        k samples of the bound without being copied. For 2,000 rows of 784 logits on one
        CPU thread: see docs/performance.md ("The other likelihoods")."""
        logits = self._logits(params.flatten(-3))  # (..., B, P)
        data = x.flatten(-3).to(logits.dtype)
        log_z = _LogNormalizerSum.apply(logits)
        return (logits * data).sum(-1) - log_z

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x] = 1 / (1 - e^-l) - 1 / l, not sigmoid(l): the continuous Bernoulli's mean
        lies nearer 1/2 than its parameter lam."""
        return mean_from_logits(self._logits(params))

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """Inverse CDF at u ~ U(0, 1), for l < 0: x = log(1 + u (e^l - 1)) / l (expm1 and
        log1p keep it exact as l -> 0, where it tends to u); for l > 0 by the symmetry
        x -> 1 - x, l -> -l, so that e^l never overflows."""
        logits = self._logits(params).detach()
        negative = -logits.abs().clamp_min(TINY)  # -|l|
        u = torch.rand_like(negative)
        x = torch.log1p(u * torch.expm1(negative)) / negative  # a draw at -|l|
        return torch.where(logits > 0, 1 - x, x)

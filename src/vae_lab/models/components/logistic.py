"""The discretized logistic: a probability mass over the 256 levels of an 8-bit pixel.

Salimans et al. 2017 (PixelCNN++, Sec. 2.1; `openai/pixel-cnn`, `pixel_cnn_pp/nn.py`). A
pixel on level k in {0, ..., 255} sits at c_k = k / 255 in [0, 1]; its bin is
[c_k - h, c_k + h] with h = 1 / 510, and

    P(k | mu, s) = sigmoid((c_k + h - mu) / s) - sigmoid((c_k - h - mu) / s),

with the edge bins taking the tails: P(0) = sigmoid((h - mu) / s) and
P(255) = 1 - sigmoid((1 - h - mu) / s). The bins tile the real line, so the 256
probabilities sum to one, and -log2 P(x) is a code length of the 8-bit image itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vae_lab.models.components.likelihoods import EightBit, Likelihood, float32_or_wider

LEVELS = 256
HALF_BIN = 0.5 / (LEVELS - 1)  # h: half a bin, in [0, 1] units (bin centres k / 255)


# Where a bin has no edge (below level 0, above level 255) the edge is put this far off
# instead, in [0, 1] units: sigmoid(BEYOND / s) is 1 in float32 for any s below 1e4, and
# unlike an infinite edge it leaves finite gradients (0 * inf would be NaN).
BEYOND = 1e6


def bin_edges(level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upper and lower edges of each level's bin, BEYOND for the open ends, and whether it
    is an interior bin (both edges finite): shapes of `level`."""
    centre = level / (LEVELS - 1)
    top, bottom = level >= LEVELS - 1, level <= 0
    upper = torch.where(top, BEYOND, centre + HALF_BIN)
    lower = torch.where(bottom, -BEYOND, centre - HALF_BIN)
    return upper, lower, ~(top | bottom)


def log_bin_width(inv_s: torch.Tensor) -> torch.Tensor:
    """log(1 - e^-(a - b)), a - b = 2h / s: the one factor of an interior bin's mass that is
    the same for every bin."""
    return torch.log(-torch.expm1(-(2 * HALF_BIN) * inv_s))


def log_bin_masses(level: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(level | mu, s) elementwise, all in log space; `level` holds integers 0..255.

    With a = (upper edge - mu) / s and b = (lower edge - mu) / s, an interior bin's mass is
    sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^-(a - b)) for a > b, so
    log P = logsigmoid(a) + logsigmoid(-b) + log(1 - e^-(a - b)): no difference of two
    numbers near 1 and no log of 0, whatever the scale (PixelCNN++ instead falls back to
    the density at the bin centre when the difference underflows). The edge bins are the
    same sum with their open edge at +-BEYOND (its logsigmoid is 0) and without the
    width factor: P(0) = sigmoid(a), P(255) = sigmoid(-b).
    """
    inv_s = torch.exp(-log_scale)
    upper, lower, interior = bin_edges(level)
    log_p = F.logsigmoid((upper - mu) * inv_s) + F.logsigmoid((mu - lower) * inv_s)
    return log_p + interior * log_bin_width(inv_s)


class DiscretizedLogistic(Likelihood):
    """Pixels as independent discretized logistics over 256 levels.

    The location mu is the decoder's output per pixel, in [0, 1] units but not squashed into
    [0, 1] (as in PixelCNN++, and as the Gaussian's mean here): a location below 0 puts nearly
    all the mass in the edge bin 0, which is what a background pixel needs. (With mu kept in
    [0, 1] by a sigmoid, P(0) could not exceed sigmoid(h / s), about 1/2 at s = 0.01.) The
    scale s is one learned number shared by all pixels, as the Gaussian's sigma in
    `GaussianLearnedSigma`: a per-pixel scale would need the image shape here, or a second
    decoder output. Unlike a density on [0, 1], a mass is at most 1, so the likelihood stays
    bounded however small s gets, and needs no floor.
    """

    discrete = True
    eight_bit: EightBit = "levels"

    def __init__(self, scale: float = 0.05) -> None:
        super().__init__()
        if not 0 < scale < math.inf:
            raise ValueError(f"likelihood.scale must be positive, got {scale}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    @staticmethod
    def levels(x: torch.Tensor) -> torch.Tensor:
        """Pixels k / 255 in [0, 1] -> their levels k (as floats); binary pixels -> 0 or 255."""
        return torch.round(x * (LEVELS - 1)).clamp(0, LEVELS - 1)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """sum_p log P(x_p | mu_p, s), the sum of `log_bin_masses` taken term by term: the
        edges and the count of interior bins come from x (B, P) alone, so over the k
        samples of the bound (..., B, P) only the two logsigmoid passes remain."""
        mu = float32_or_wider(params.flatten(-3))  # (..., B, P); BEYOND / s needs float32
        upper, lower, interior = bin_edges(self.levels(x.flatten(-3).to(mu.dtype)))
        inv_s = torch.exp(-self.log_scale)
        log_p = F.logsigmoid((upper - mu) * inv_s).sum(-1)
        log_p += F.logsigmoid((mu - lower) * inv_s).sum(-1)
        return log_p + interior.sum(-1) * log_bin_width(inv_s)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The location clipped to [0, 1]: the median up to rounding to a level. (The mean
        moves off it only where the edge bins' tails pile up, within a few s of 0 or 1.)"""
        return params.clamp(0.0, 1.0)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """Inverse CDF of the logistic, rounded to the nearest level: a draw of P itself."""
        u = torch.rand_like(params).clamp(1e-6, 1 - 1e-6)
        y = params + self.log_scale.exp() * (torch.log(u) - torch.log1p(-u))
        return self.levels(y) / (LEVELS - 1)

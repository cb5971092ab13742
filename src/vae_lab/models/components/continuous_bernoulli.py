"""The continuous Bernoulli: the Bernoulli's cross-entropy made a density on [0, 1].

Loaiza-Ganem & Cunningham 2019: p(x | l) = C(l) l^x (1 - l)^(1 - x) for x in [0, 1], with
C(l) = 2 artanh(1 - 2l) / (1 - 2l) and C(1/2) = 2. The Bernoulli used on continuous pixels
is this without C(l), so not normalized; with it, -log p is a density's, and bits/dim of
the 8-bit images follow by dequantization (vae_lab.evaluation.bits).
"""

from __future__ import annotations

import torch
from torch.distributions import ContinuousBernoulli as TorchContinuousBernoulli

from vae_lab.models.components.likelihoods import EightBit, Likelihood


class ContinuousBernoulli(Likelihood):
    """Pixels as independent continuous Bernoullis on logits (the decoder's output).

    `torch.distributions.ContinuousBernoulli` computes log C(l) with a Taylor expansion
    near l = 1/2 (its `lims`), where the closed form is 0/0.
    """

    eight_bit: EightBit = "density"

    @staticmethod
    def distribution(params: torch.Tensor) -> TorchContinuousBernoulli:
        # validate_args=False: no check per call that the data lie in [0, 1]
        return TorchContinuousBernoulli(logits=params, validate_args=False)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        log_p = self.distribution(params).log_prob(x.expand_as(params))
        return log_p.flatten(-3).sum(-1)  # (..., C, H, W) -> (...)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x] = l / (2l - 1) + 1 / (2 artanh(1 - 2l)), not l: the continuous Bernoulli's
        mean lies nearer 1/2 than its parameter."""
        return self.distribution(params).mean

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        return self.distribution(params).sample()

"""The discretized logistic and the continuous Bernoulli against numerical integrals."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from vae_lab.models.components.continuous_bernoulli import ContinuousBernoulli
from vae_lab.models.components.logistic import DiscretizedLogistic, log_bin_masses

CASES = [(0.3, 0.02), (0.02, 0.05), (0.97, 0.01), (0.5, 0.3), (0.6, 0.002), (-0.05, 0.01)]


def logistic_pdf(y: torch.Tensor, mu: float, s: float) -> torch.Tensor:
    t = (y - mu).abs() / s  # symmetric, and exp(-|t|) never overflows
    return torch.exp(-t) / (s * (1 + torch.exp(-t)) ** 2)


@functools.cache
def brute_force_bins(mu: float, s: float, points: int = 4001) -> torch.Tensor:
    """P(k) for k = 0..255 by the trapezoid rule on the logistic density over each bin
    [k/255 - 1/510, k/255 + 1/510], the first and last bins reaching 60 scales into the tails."""
    h = 0.5 / 255
    centres = torch.arange(256, dtype=torch.float64) / 255
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    y = (centres - h)[:, None] + 2 * h * t  # (256, points): each row one bin
    masses = torch.trapezoid(logistic_pdf(y, mu, s), y, dim=1)
    for k, lo, hi in ((0, min(mu, 0.0) - 60 * s, h), (255, 1 - h, max(mu, 1.0) + 60 * s)):
        tail = torch.linspace(lo, hi, 100 * points, dtype=torch.float64)
        masses[k] = torch.trapezoid(logistic_pdf(tail, mu, s), tail)
    return masses


@pytest.mark.parametrize(("mu", "s"), CASES)
def test_logistic_bins_are_the_integral_of_the_density_and_sum_to_one(mu: float, s: float) -> None:
    levels = torch.arange(256, dtype=torch.float64)
    log_p = log_bin_masses(
        levels,
        torch.tensor(mu, dtype=torch.float64),
        torch.tensor(math.log(s), dtype=torch.float64),
    )
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-12)
    expected = brute_force_bins(mu, s)
    assert float(expected.sum()) == pytest.approx(1.0, abs=1e-9)  # the brute force's own check
    visible = expected > 1e-200  # bins far out in a sharp tail underflow in the brute force
    torch.testing.assert_close(log_p[visible], expected[visible].log(), rtol=0, atol=1e-6)


def test_logistic_log_prob_sums_pixels_of_8bit_images() -> None:
    mu = torch.tensor([[[-0.02, 0.5, 0.9]]], dtype=torch.float64)  # (C, H, W) = (1, 1, 3)
    s = 0.04
    x_levels = torch.tensor([[[[0, 128, 255]]], [[[30, 120, 200]]]]).double()  # (B, 1, 1, 3)
    likelihood = DiscretizedLogistic(scale=s).double()
    likelihood.log_scale.data = torch.tensor(math.log(s), dtype=torch.float64)  # s exactly
    log_p = likelihood.log_prob(x_levels / 255, mu.expand(2, 1, 1, 3))
    tables = [brute_force_bins(float(m), s).log() for m in mu.flatten()]
    expected = [sum(tables[j][int(x_levels[b].flatten()[j])] for j in range(3)) for b in range(2)]
    torch.testing.assert_close(log_p, torch.stack(expected), rtol=0, atol=1e-6)


def test_logistic_samples_follow_its_bins() -> None:
    torch.manual_seed(0)
    mu, s = 0.3, 0.02
    likelihood = DiscretizedLogistic(scale=s)
    draws = likelihood.sample(torch.full((200_000, 1, 1, 1), mu))
    counts = torch.bincount((draws.flatten() * 255).round().long(), minlength=256)
    total_variation = 0.5 * (counts / counts.sum() - brute_force_bins(mu, s)).abs().sum()
    assert float(total_variation) < 0.01
    assert bool(((draws * 255 - (draws * 255).round()).abs() < 1e-4).all())  # on the levels


def test_logistic_scale_is_learned_and_starts_where_asked() -> None:
    likelihood = DiscretizedLogistic(scale=0.05)
    assert float(likelihood.log_scale.detach().exp()) == pytest.approx(0.05)
    x = torch.full((4, 1, 2, 2), 100 / 255)
    likelihood.log_prob(x, torch.zeros(4, 1, 2, 2)).sum().backward()
    assert likelihood.log_scale.grad is not None and float(likelihood.log_scale.grad) != 0
    with pytest.raises(ValueError, match="scale must be positive"):
        DiscretizedLogistic(scale=0.0)


LOGITS = [-5.0, -0.3, 1e-3, 0.0, 2.0, 8.0]  # 1e-3: inside torch's Taylor region near 1/2


@pytest.mark.parametrize("logit", LOGITS)
def test_continuous_bernoulli_is_a_density_on_the_unit_interval(logit: float) -> None:
    x = torch.linspace(0, 1, 20_001, dtype=torch.float64).reshape(-1, 1, 1, 1)
    likelihood = ContinuousBernoulli()
    params = torch.full_like(x, logit)
    density = likelihood.log_prob(x, params).exp()
    assert float(torch.trapezoid(density, x.flatten())) == pytest.approx(1.0, abs=1e-7)
    mean = likelihood.mean(params[:1]).flatten()
    assert float(mean) == pytest.approx(float(torch.trapezoid(x.flatten() * density, x.flatten())))


def test_continuous_bernoulli_by_hand() -> None:
    lam, x = 0.2, 0.7
    normalizer = 2 * math.atanh(1 - 2 * lam) / (1 - 2 * lam)  # C(l), Loaiza-Ganem & Cunningham
    expected = math.log(normalizer) + x * math.log(lam) + (1 - x) * math.log(1 - lam)
    params = torch.full((1, 1, 1, 1), math.log(lam / (1 - lam)), dtype=torch.float64)
    log_p = ContinuousBernoulli().log_prob(torch.full_like(params, x), params)
    assert float(log_p) == pytest.approx(expected, rel=1e-9)
    zero = ContinuousBernoulli().log_prob(torch.rand(3, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    assert torch.equal(zero, torch.zeros(3))  # l = 1/2: the uniform density, C(1/2) = 2


@pytest.mark.parametrize("likelihood", [ContinuousBernoulli(), DiscretizedLogistic()])
def test_new_likelihoods_broadcast_over_samples_of_z(likelihood: torch.nn.Module) -> None:
    x = torch.rand(3, 1, 4, 4)
    params = torch.randn(5, 3, 1, 4, 4)  # 5 samples of z per image
    log_p = likelihood.log_prob(x, params)
    assert log_p.shape == (5, 3)
    torch.testing.assert_close(log_p[2], likelihood.log_prob(x, params[2]))
    assert likelihood.sample(params).shape == likelihood.mean(params).shape == params.shape

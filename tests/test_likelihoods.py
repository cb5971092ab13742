"""The discretized logistic and the continuous Bernoulli against numerical integrals."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from vae_lab.models.components.continuous_bernoulli import (
    TORCH_FLOAT32_LOGIT,
    ContinuousBernoulli,
    mean_from_logits,
)
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


@pytest.mark.parametrize(("mu", "s"), [(0.3, 0.02), (-0.03, 0.02), (0.98, 0.02)])
def test_logistic_samples_follow_its_bins(mu: float, s: float) -> None:
    """Inside, and near 0 or 1 where most of the mass is in an edge bin (0.83 in bin 0 at
    mu = -0.03): the draws, clamped to the levels, must put it there and no further."""
    torch.manual_seed(0)
    draws = DiscretizedLogistic(scale=s).sample(torch.full((200_000, 1, 1, 1), mu))
    counts = torch.bincount((draws.flatten() * 255).round().long(), minlength=256)
    assert len(counts) == 256  # nothing beyond level 255 (below 0, bincount raises)
    total_variation = 0.5 * (counts / counts.sum() - brute_force_bins(mu, s)).abs().sum()
    assert float(total_variation) < 0.01
    assert bool(((draws * 255 - (draws * 255).round()).abs() < 1e-4).all())  # on the levels


@pytest.mark.parametrize("s", [0.04, 0.002])
def test_logistic_log_prob_in_float32(s: float) -> None:
    """Training runs in float32: the same 8-bit pixels as levels / 255 in float32, against
    the float64 brute force (1e-4 nats: at s = 0.002 an edge's rounding, 3e-8, is 1.5e-5 in
    the sigmoid's argument)."""
    mu = torch.tensor([-0.02, 0.5, 0.9, 0.3011])
    x_levels = torch.tensor([0, 128, 255, 77])
    likelihood = DiscretizedLogistic(scale=s)
    log_p = likelihood.log_prob((x_levels / 255).reshape(1, 1, 1, 4), mu.reshape(1, 1, 1, 4))
    assert log_p.dtype == torch.float32
    s_used = float(likelihood.log_scale.detach().exp())  # s as float32 stores it
    expected = sum(
        float(brute_force_bins(float(m), s_used)[int(k)].log())
        for m, k in zip(mu, x_levels, strict=True)
    )
    assert float(log_p.detach()) == pytest.approx(expected, abs=1e-4)


def test_logistic_gradient_in_its_scale_against_finite_differences() -> None:
    """log_prob's own gradient in log s (not `log_bin_masses`', a separate code path),
    against a central difference in float64, over edge and interior pixels and k = 2
    samples of mu."""
    likelihood = DiscretizedLogistic(scale=0.03).double()
    x = torch.tensor([0.0, 100 / 255, 1.0, 254 / 255], dtype=torch.float64).reshape(1, 1, 1, 4)
    mu = torch.tensor([[0.01, 0.4, 0.95, 0.99], [-0.1, 0.38, 1.2, 0.5]], dtype=torch.float64)
    mu = mu.reshape(2, 1, 1, 1, 4)

    likelihood.log_prob(x, mu).sum().backward()
    assert likelihood.log_scale.grad is not None
    centre, eps, sides = float(likelihood.log_scale.detach()), 1e-6, []
    with torch.no_grad():
        for shifted in (centre + eps, centre - eps):
            likelihood.log_scale.fill_(shifted)
            sides.append(float(likelihood.log_prob(x, mu).sum()))
    finite_difference = (sides[0] - sides[1]) / (2 * eps)
    assert float(likelihood.log_scale.grad) == pytest.approx(finite_difference, rel=1e-6)


def test_logistic_mean_is_the_clipped_location_and_the_median_level() -> None:
    likelihood = DiscretizedLogistic(scale=0.02)
    mean = likelihood.mean(torch.tensor([-0.2, 0.31, 1.4]).reshape(3, 1, 1, 1))
    torch.testing.assert_close(mean.flatten(), torch.tensor([0.0, 0.31, 1.0]))
    # the docstring's claim: the clipped location rounds to the median level (0.31 * 255 =
    # 79.05), where the brute-force bins' cumulative sum crosses 1/2
    median = int((brute_force_bins(0.31, 0.02).cumsum(0) < 0.5).sum())
    assert int(DiscretizedLogistic.levels(mean[1])) == median == 79


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


def brute_force_normalizer(logit: float, points: int = 400_001) -> tuple[float, float]:
    """(log Z(l), E[x]) of the continuous Bernoulli by the trapezoid rule in float64:
    Z(l) = int_0^1 e^(l x) dx, E[x] = int_0^1 x e^(l x) dx / Z(l) (e^(l x) scaled by
    e^-max(l, 0) so that nothing overflows)."""
    x = torch.linspace(0, 1, points, dtype=torch.float64)
    weight = torch.exp(logit * x - max(logit, 0.0))
    z = torch.trapezoid(weight, x)
    return math.log(z) + max(logit, 0.0), float(torch.trapezoid(x * weight, x) / z)


# Both sides of the mean's series/closed-form switch at |l| = 1/2, l = 0, and logits where
# lam = sigmoid(l) rounds to 0 or 1 (torch's own ContinuousBernoulli is off by 0.1 nats at
# l = 40 in float64 and by 2 at l = 100 in float32).
WIDE_LOGITS = [-60.0, -20.0, -0.5, -0.4999, -1e-3, 0.0, 1e-7, 0.25, 0.5001, 7.0, 40.0]


@pytest.mark.parametrize("logit", WIDE_LOGITS)
def test_continuous_bernoulli_normalizer_and_gradient_against_integrals(logit: float) -> None:
    log_z, mean = brute_force_normalizer(logit)
    x = torch.tensor([[[[0.0, 0.3, 1.0]]]], dtype=torch.float64)  # (1, 1, 1, 3)
    params = torch.full_like(x, logit, requires_grad=True)
    log_p = ContinuousBernoulli(max_logit=None).log_prob(x, params)
    # log p(x | l) = l x - log Z(l), summed over the three pixels
    assert float(log_p.detach()) == pytest.approx(logit * 1.3 - 3 * log_z, abs=1e-8)
    (grad,) = torch.autograd.grad(log_p, params)
    # d log p / dl = x - E[x]: the exponential family's score
    torch.testing.assert_close(grad, x - mean, rtol=0, atol=1e-9)


def test_continuous_bernoulli_in_float32_far_from_one_half() -> None:
    """By hand: log Z(l) = l + log(1 - e^-l) - log l for l > 0 and log(1 - e^l) - log(-l)
    for l < 0, so at x = 0.3, l = 100: 30 - 100 + log 100 = -65.39483; l = -1000:
    -300 + log 1000 = -293.09224; l = 1000: 300 - 1000 + log 1000 = -693.09224."""
    params = torch.tensor([100.0, -1000.0, 1000.0]).reshape(3, 1, 1, 1)
    log_p = ContinuousBernoulli(max_logit=None).log_prob(torch.full_like(params, 0.3), params)
    torch.testing.assert_close(log_p, torch.tensor([-65.39483, -293.09224, -693.09224]))


def test_continuous_bernoulli_default_bound_is_torchs_float32_cap() -> None:
    """By default |l| <= logit(1 - 2^-23) = 15.942385: at x = 0 and l = -100 the density is
    then 15.942385 / (1 - e^-15.942385), log 2.768980 by hand, as torch's float32 class caps
    it; and it still integrates to one (trapezoid, 200,001 points)."""
    params = torch.tensor([-100.0, -15.942385, 100.0, 15.942385]).reshape(4, 1, 1, 1)
    x = torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(4, 1, 1, 1)  # the mirror: x -> 1 - x, l -> -l
    log_p = ContinuousBernoulli().log_prob(x, params)
    torch.testing.assert_close(log_p, torch.full((4,), 2.768981))
    # the mean the pictures show is the bounded law's on both sides
    bounded_mean = brute_force_normalizer(-15.942385)[1]  # 0.0627 (the unbounded: 0.0100)
    means = ContinuousBernoulli().mean(torch.tensor([-100.0, 100.0]).reshape(2, 1, 1, 1))
    torch.testing.assert_close(
        means.flatten(), torch.tensor([bounded_mean, 1 - bounded_mean]), rtol=0, atol=1e-6
    )
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    density = ContinuousBernoulli().log_prob(
        x.reshape(-1, 1, 1, 1), torch.full((len(x), 1, 1, 1), 40.0, dtype=torch.float64)
    )
    assert float(torch.trapezoid(density.exp(), x)) == pytest.approx(1.0, abs=1e-7)
    with pytest.raises(ValueError, match="max_logit must be positive"):
        ContinuousBernoulli(max_logit=0.0)


def test_continuous_bernoulli_bound_stops_gradients_past_it() -> None:
    """Past the bound the gradient is 0; inside it x - E[x | l] = 0.3 - (1 / (1 - e^15) +
    1 / 15) by hand. (A straight-through bound, -0.063 at a background pixel forever, made
    the default MLP's loss inf at step 73.)"""
    logits = torch.tensor([-20.0, -15.0, 20.0]).reshape(3, 1, 1, 1).requires_grad_()
    ContinuousBernoulli().log_prob(torch.full_like(logits, 0.3), logits).sum().backward()
    assert logits.grad is not None
    assert float(logits.grad[0]) == 0.0 and float(logits.grad[2]) == 0.0
    inside = 0.3 - (1 / (1 - math.exp(15.0)) + 1 / 15.0)
    assert float(logits.grad[1]) == pytest.approx(inside, abs=1e-5)


@pytest.mark.parametrize(
    ("logit", "max_logit"),
    [
        *[(logit, None) for logit in (-100.0, -3.0, 0.0, 1e-6, 0.2, 40.0)],
        *[(logit, 15.942385) for logit in (-100.0, 100.0)],  # the default: drawn at +-15.94
    ],
)
def test_continuous_bernoulli_draws_follow_its_cdf(logit: float, max_logit: float | None) -> None:
    """Kolmogorov-Smirnov distance of 100,000 draws from F(x) = (e^(l x) - 1) / (e^l - 1),
    written at l < 0 as expm1(l x) / expm1(l) and through 1 - F(1 - x | -l) at l > 0; at
    this n, 0.006 is the 1% critical value about 1.63 / sqrt(n) = 0.005 with a margin.
    (torch's sampler clamps sigmoid(l) and draws from the capped law: its mean at l = -100
    is 0.063, not 0.010.)"""
    torch.manual_seed(0)
    n = 100_000
    draws = ContinuousBernoulli(max_logit=max_logit).sample(torch.full((n, 1, 1, 1), logit))
    x = draws.double().flatten().sort().values
    if max_logit is not None:
        logit = max(-max_logit, min(max_logit, logit))
    if abs(logit) < 1e-4:
        cdf = x  # uniform to within 1e-6
    elif logit < 0:
        cdf = torch.expm1(logit * x) / math.expm1(logit)
    else:
        cdf = 1 - torch.expm1(-logit * (1 - x)) / math.expm1(-logit)
    ecdf = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert float((ecdf - cdf).abs().max()) < 0.006


def test_continuous_bernoulli_gradient_near_one_half_in_float32() -> None:
    """At |l| << 1 the score x - E[x] is x - 1/2 - l/12 to float32 precision. Autograd
    through log((1 - e^-a) / a) is not: measured, 1e-4 off at l = 1e-3, 8e-6 at 1e-4, and
    1/2 off at l = 0 (the clamp of a = |l| cuts the gradient there)."""
    logits = torch.tensor([1e-6, -1e-6, 1e-4, 3e-3, 0.0]).reshape(5, 1, 1, 1).requires_grad_()
    x = torch.full_like(logits, 0.8)
    ContinuousBernoulli(max_logit=None).log_prob(x, logits).sum().backward()
    assert logits.grad is not None
    expected = 0.8 - 0.5 - logits.detach() / 12
    torch.testing.assert_close(logits.grad, expected, rtol=0, atol=1e-6)


def test_continuous_bernoulli_mean_and_finite_difference_gradient() -> None:
    logits = torch.tensor(WIDE_LOGITS, dtype=torch.float64)
    expected = torch.tensor(
        [brute_force_normalizer(v)[1] for v in WIDE_LOGITS], dtype=torch.float64
    )
    torch.testing.assert_close(mean_from_logits(logits), expected, rtol=0, atol=1e-9)
    x = torch.rand(len(WIDE_LOGITS), 1, 1, 1, dtype=torch.float64)
    params = logits.reshape(-1, 1, 1, 1).clone().requires_grad_()
    likelihood = ContinuousBernoulli(max_logit=None)
    assert torch.autograd.gradcheck(lambda p: likelihood.log_prob(x, p), (params,))
    assert torch.autograd.gradcheck(mean_from_logits, (logits.clone().requires_grad_(),))


def test_half_precision_params_are_scored_in_float32() -> None:
    """fp16 decoder output (16-mixed), scored in float32, against the float64 brute forces
    at the fp16-rounded values: the continuous Bernoulli's 1/|l| and the logistic's open
    edges (1e6 / s) leave fp16's range, so scoring in fp16 would give inf or NaN."""
    torch.manual_seed(0)
    x = (torch.randint(0, 256, (2, 1, 4, 4)) / 255).float()
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # both edge bins of the logistic
    levels = DiscretizedLogistic.levels(x).flatten(1).long()
    logistic = DiscretizedLogistic(scale=0.02)
    s = float(logistic.log_scale.detach().exp())
    for likelihood, params in (
        (ContinuousBernoulli(), torch.randn(2, 1, 4, 4) * 5),
        (logistic, torch.rand(2, 1, 4, 4)),
    ):
        half = params.half().requires_grad_()
        log_p = likelihood.log_prob(x, half)
        assert log_p.dtype == torch.float32
        values = half.detach().double().flatten(1)
        if likelihood is not logistic:  # the continuous Bernoulli's default bound
            values = values.clamp(-TORCH_FLOAT32_LOGIT, TORCH_FLOAT32_LOGIT)
        if likelihood is logistic:
            terms = [
                [brute_force_bins(float(m), s)[k].log() for m, k in zip(v, lv, strict=True)]
                for v, lv in zip(values, levels, strict=True)
            ]
        else:
            terms = [
                [
                    float(logit) * float(pixel) - brute_force_normalizer(float(logit))[0]
                    for logit, pixel in zip(v, xv, strict=True)
                ]
                for v, xv in zip(values, x.double().flatten(1), strict=True)
            ]
        expected = torch.tensor([float(sum(row)) for row in terms])
        torch.testing.assert_close(log_p.detach().double(), expected.double(), rtol=0, atol=1e-4)
        log_p.sum().backward()
        assert half.grad is not None and bool(half.grad.isfinite().all())


def test_logistic_gradients_are_finite_at_the_edge_bins() -> None:
    """Levels 0 and 255 put their open edge at +-1e6 rather than +-inf: 0 * inf would make
    the gradient of log s NaN. Checked against finite differences in float64."""
    x = torch.tensor([0.0, 1.0, 100 / 255, 0.0, 1.0, 254 / 255], dtype=torch.float64)
    x = x.reshape(2, 1, 1, 3)
    mu = torch.tensor([-0.1, 0.9, 0.4, 0.02, 1.3, 0.5], dtype=torch.float64)
    mu = mu.reshape(2, 1, 1, 3).requires_grad_()
    likelihood = DiscretizedLogistic(scale=0.03).double()
    assert torch.autograd.gradcheck(lambda m: likelihood.log_prob(x, m), (mu,))
    log_s = likelihood.log_scale.detach().clone().requires_grad_()
    levels = DiscretizedLogistic.levels(x)
    assert torch.autograd.gradcheck(lambda s: log_bin_masses(levels, mu.detach(), s), (log_s,))
    likelihood.log_prob(x, mu).sum().backward()
    assert likelihood.log_scale.grad is not None and bool(likelihood.log_scale.grad.isfinite())


@pytest.mark.parametrize("likelihood", [ContinuousBernoulli(), DiscretizedLogistic()])
def test_new_likelihoods_broadcast_over_samples_of_z(likelihood: torch.nn.Module) -> None:
    x = torch.rand(3, 1, 4, 4)
    params = torch.randn(5, 3, 1, 4, 4)  # 5 samples of z per image
    log_p = likelihood.log_prob(x, params)
    assert log_p.shape == (5, 3)
    torch.testing.assert_close(log_p[2], likelihood.log_prob(x, params[2]))
    assert likelihood.sample(params).shape == likelihood.mean(params).shape == params.shape

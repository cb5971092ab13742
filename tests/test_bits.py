"""Bits per dim of 8-bit images, against answers known exactly.

With q(z|x) = p(z) and a decoder that ignores z, every importance weight is p(x|z) = p(x),
so the model's bound L_k is log p(x) exactly and only the dequantization is left to test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import ContinuousBernoulli as TorchContinuousBernoulli
from torch.distributions import Independent, Normal

from tests.test_likelihoods import brute_force_bins
from vae_lab.data.batches import IndexBatches
from vae_lab.evaluation.bits import bits_per_dim_of, not_applicable
from vae_lab.evaluation.metrics import evaluate
from vae_lab.models.components.continuous_bernoulli import ContinuousBernoulli
from vae_lab.models.components.gaussian import diagonal_gaussian
from vae_lab.models.components.likelihoods import Bernoulli, Gaussian, Likelihood
from vae_lab.models.components.logistic import DiscretizedLogistic
from vae_lab.models.components.prior import StandardNormalPrior
from vae_lab.models.vae import VAE

SHAPE = (1, 4, 4)
D = 16


class PriorEncoder(nn.Module):
    def forward(self, x: torch.Tensor) -> Independent:
        zeros = x.new_zeros(len(x), 2)
        return diagonal_gaussian(zeros, zeros)  # q(z|x) = N(0, I) = p(z)


class ConstantDecoder(nn.Module):
    def __init__(self, params: torch.Tensor) -> None:
        super().__init__()
        self.params = nn.Parameter(params, requires_grad=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.params.expand(*z.shape[:-1], *self.params.shape)


def fixed_model(likelihood: Likelihood, params: torch.Tensor) -> VAE:
    return VAE(PriorEncoder(), ConstantDecoder(params), likelihood, StandardNormalPrior(2), None)  # type: ignore[arg-type]


def images(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 images (n, 1, 4, 4) with levels spread over 0..255."""
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed))


def bpd_8bit(model: VAE, x8: torch.Tensor, k: int = 3) -> torch.Tensor:
    x = x8.double() / 255
    iw = model.iw_log_likelihood((x, None), k)
    bits = bits_per_dim_of(
        model.likelihood, x, iw, lambda y: model.iw_log_likelihood((y, None), k), False
    )
    return bits["bpd_8bit"]


def test_a_density_uniform_per_pixel_gives_exactly_8_bits() -> None:
    # the continuous Bernoulli at l = 1/2 is the uniform density on [0, 1]: p(y) = 1
    model = fixed_model(ContinuousBernoulli(), torch.zeros(SHAPE)).double()
    torch.testing.assert_close(bpd_8bit(model, images(50)), torch.full((50,), 8.0))
    batches = IndexBatches(images(30).to(torch.uint8), torch.zeros(30), batch_size=7, shuffle=False)
    assert evaluate(model, batches, k=4).bpd_8bit == pytest.approx(8.0, abs=1e-6)


def exact_bpd(x8: torch.Tensor, cdf: object) -> torch.Tensor:
    """-log2 P(x) / D with P(x) = prod over pixels of the density's mass on [x/256, (x+1)/256)."""
    x = x8.double()
    mass = cdf((x + 1) / 256) - cdf(x / 256)  # type: ignore[operator]
    return -mass.log2().flatten(1).sum(1) / D


MEANS = torch.linspace(0.05, 0.95, D, dtype=torch.float64).reshape(SHAPE)


def near_means(n: int) -> torch.Tensor:
    """uint8-valued images within 2 levels of MEANS: where a sharp density has its mass."""
    offsets = torch.randint(-2, 3, (n, *SHAPE), generator=torch.Generator().manual_seed(2))
    return (MEANS * 256).floor().long() + offsets


def gaussian_case(sigma: float) -> tuple[VAE, object, torch.Tensor]:
    model = fixed_model(Gaussian(sigma), MEANS.clone()).double()
    return model, Normal(MEANS, sigma).cdf, near_means(8) if sigma < 0.01 else images(8, seed=1)


def spike_case() -> tuple[VAE, object, torch.Tensor]:
    """A Gaussian 8 times narrower than a bin, centred in the bin of each pixel: p at the bin
    centre is ~800, so evaluating there instead of drawing u would claim fewer than 0 bits."""
    levels = images(1, seed=3)[0]
    means = (levels.double() + 0.5) / 256
    model = fixed_model(Gaussian(0.0005), means).double()
    return model, Normal(means, 0.0005).cdf, levels.expand(8, *SHAPE)


def continuous_bernoulli_case(spread: float) -> tuple[VAE, object, torch.Tensor]:
    logits = torch.linspace(-spread, spread, D, dtype=torch.float64).reshape(SHAPE)
    cdf = TorchContinuousBernoulli(logits=logits, validate_args=False).cdf
    model = fixed_model(ContinuousBernoulli(max_logit=None), logits).double()
    return model, cdf, images(8, seed=1)


REPEATS = 400  # draws of u per image


@pytest.mark.parametrize(
    ("case", "sharp"),
    [
        (lambda: gaussian_case(0.002), True),  # sigma < a bin (1/256): log p varies a lot in it
        (lambda: gaussian_case(0.15), False),
        (spike_case, True),
        # log p is linear in y, its slope the logit: the gap is ~ (logit / 256)^2 / 24 per pixel
        (lambda: continuous_bernoulli_case(3.0), False),
        (lambda: continuous_bernoulli_case(30.0), False),
    ],
    ids=["gaussian-sharp", "gaussian-smooth", "gaussian-spike", "cb-3", "cb-30"],
)
def test_the_dequantized_bound_is_never_below_the_exact_discrete_value(
    case: object, sharp: bool
) -> None:
    torch.manual_seed(0)
    model, cdf, x8 = case()  # type: ignore[operator]
    bound = bpd_8bit(model, x8.repeat_interleave(REPEATS, 0)).view(8, REPEATS).mean(1)
    exact = exact_bpd(x8, cdf).float()
    if sharp:  # a Jensen gap far above the Monte Carlo noise of the 400 draws
        assert bool((bound > exact + 0.05).all()), (bound, exact)
    else:  # a smooth density: the bound is tight, within the Monte Carlo noise
        assert bool(((bound - exact).abs() < 2e-3).all()), (bound, exact)
        assert float((bound - exact).mean()) > -5e-4


def test_a_mass_over_levels_gives_its_exact_bits() -> None:
    mu, s = 0.3, 0.02
    model = fixed_model(DiscretizedLogistic(scale=s), torch.full(SHAPE, mu))
    model = model.double()
    model.likelihood.log_scale.data = torch.tensor(math.log(s), dtype=torch.float64)
    x8 = images(5)
    expected = -brute_force_bins(mu, s).log2()[x8.long()].flatten(1).sum(1) / D
    torch.testing.assert_close(bpd_8bit(model, x8), expected.float(), rtol=0, atol=1e-5)


def test_the_bernoulli_on_continuous_pixels_has_no_8bit_figure_and_says_why() -> None:
    model = fixed_model(Bernoulli(), torch.zeros(SHAPE))
    x = images(6).float() / 255
    iw = model.iw_log_likelihood((x, None), 2)
    assert bits_per_dim_of(model.likelihood, x, iw, lambda y: iw, binarized=False) == {}
    assert "not a normalized distribution" in not_applicable(Bernoulli(), False)["bpd_8bit"]
    batches = IndexBatches(images(6).to(torch.uint8), torch.zeros(6), batch_size=6, shuffle=False)
    result = evaluate(model, batches, k=2)
    assert result.bpd is None and result.bpd_8bit is None
    assert set(result.not_applicable) == {"bpd", "bpd_8bit"}


def test_binarized_data_gives_bpd_over_0_1_pixels_and_no_8bit_figure() -> None:
    model = fixed_model(Bernoulli(), torch.zeros(SHAPE))  # p = 1/2 per pixel: 1 bit each
    x = (images(6) > 127).float()
    iw = model.iw_log_likelihood((x, None), 2)
    bits = bits_per_dim_of(model.likelihood, x, iw, lambda y: iw, binarized=True)
    assert set(bits) == {"bpd"}
    torch.testing.assert_close(bits["bpd"], torch.ones(6))
    assert "binarized" in not_applicable(Bernoulli(), True)["bpd_8bit"]
    assert set(not_applicable(Gaussian(), True)) == {"bpd", "bpd_8bit"}

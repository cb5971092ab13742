"""Encoders, decoders, likelihoods, prior: shape contracts and maths against independent code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

from vae_lab.models.components.conv import ConvDecoder, ConvEncoder
from vae_lab.models.components.gated_mlp import GatedMLPDecoder, GatedMLPEncoder
from vae_lab.models.components.gaussian import diagonal_gaussian, log_variance
from vae_lab.models.components.likelihoods import (
    Bernoulli,
    Gaussian,
    GaussianLearnedSigma,
    sum_of_logs,
)
from vae_lab.models.components.mlp import MLPDecoder, MLPEncoder
from vae_lab.models.components.prior import StandardNormalPrior

ARCHITECTURES = [
    (MLPEncoder, MLPDecoder),
    (ConvEncoder, ConvDecoder),
    (GatedMLPEncoder, GatedMLPDecoder),
]


@pytest.mark.parametrize(("encoder_cls", "decoder_cls"), ARCHITECTURES)
@pytest.mark.parametrize("latent_dim", [1, 2, 16, 64])
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32), (1, 27, 19)])
def test_shape_contract(encoder_cls, decoder_cls, latent_dim: int, input_shape) -> None:
    encoder = encoder_cls(input_shape=input_shape, latent_dim=latent_dim)
    decoder = decoder_cls(output_shape=input_shape, latent_dim=latent_dim)
    x = torch.rand(5, *input_shape)
    q = encoder(x)
    assert isinstance(q, Independent)
    assert q.mean.shape == log_variance(q).shape == (5, latent_dim)
    assert decoder(q.rsample()).shape == (5, *input_shape)
    assert decoder(q.rsample((3,))).shape == (3, 5, *input_shape)  # K samples of z at once
    # two numbers per pixel (a likelihood with a per-pixel scale): twice the channels
    channels, *side = input_shape
    wide = decoder_cls(output_shape=(2 * channels, *side), latent_dim=latent_dim)
    assert wide(q.rsample((3,))).shape == (3, 5, 2 * channels, *side)


def test_gated_unit_clamp_and_init_of_the_vampprior_network() -> None:
    """Worked by hand: with the gate's weights 0 and bias b, a unit is h(x) sigmoid(b);
    a log-variance pushed to +-50 comes out at Hardtanh's 2 and -6; He-normal weights of a
    784 -> 300 layer have standard deviation sqrt(2 / 784) = 0.0505 (235,200 draws: the
    sample's is within 1%)."""
    torch.manual_seed(0)
    encoder = GatedMLPEncoder(input_shape=(1, 28, 28), latent_dim=3)
    first = encoder.body[0]
    assert float(first.h.weight.detach().std()) == pytest.approx(math.sqrt(2 / 784), rel=0.01)
    with torch.no_grad():
        first.g.weight.zero_()
        first.g.bias.fill_(0.4)
        encoder.log_var.weight.zero_()
        encoder.log_var.bias.copy_(torch.tensor([50.0, -50.0, 0.5]))
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(
        first(x.flatten(1)), first.h(x.flatten(1)) * (1 / (1 + math.exp(-0.4)))
    )
    torch.testing.assert_close(log_variance(encoder(x)), torch.tensor([[2.0, -6.0, 0.5]] * 2))


@pytest.mark.parametrize(("encoder_cls", "decoder_cls"), ARCHITECTURES)
def test_a_condition_reaches_encoder_and_decoder(encoder_cls, decoder_cls) -> None:
    shape, classes = (1, 12, 12), 4
    torch.manual_seed(0)
    encoder = encoder_cls(input_shape=shape, latent_dim=3, condition_dim=classes)
    decoder = decoder_cls(output_shape=shape, latent_dim=3, condition_dim=classes)
    x, z = torch.rand(2, *shape), torch.randn(2, 3)
    one, two = torch.eye(classes)[[1, 1]], torch.eye(classes)[[2, 2]]
    assert not torch.allclose(encoder(x, one).mean, encoder(x, two).mean)
    assert not torch.allclose(decoder(z, one), decoder(z, two))
    assert decoder(torch.randn(5, 2, 3), one).shape == (5, 2, *shape)  # c broadcasts over K


def test_conv_rejects_too_many_layers() -> None:
    with pytest.raises(ValueError, match="shrink"):
        ConvEncoder(input_shape=(1, 4, 4), latent_dim=2, channels=(8, 8, 8))


def test_closed_form_kl_by_hand() -> None:
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 (Kingma & Welling, App. B)
    mean, log_var = torch.randn(6, 4), torch.randn(6, 4)
    q = diagonal_gaussian(mean, log_var)
    by_hand = 0.5 * (mean**2 + log_var.exp() - 1 - log_var)
    torch.testing.assert_close(StandardNormalPrior(4).kl_per_dim(q), by_hand)
    torch.testing.assert_close(StandardNormalPrior(4).kl(q, q.rsample()), by_hand.sum(-1))


def test_gaussian_log_prob_and_prior_by_hand() -> None:
    mean, log_var = torch.randn(6, 4), torch.randn(6, 4)
    q = diagonal_gaussian(mean, log_var)
    z = q.rsample()
    log_2pi = math.log(2 * math.pi)
    by_hand = -0.5 * (log_2pi + log_var + (z - mean) ** 2 / log_var.exp()).sum(-1)
    torch.testing.assert_close(q.log_prob(z), by_hand)
    torch.testing.assert_close(StandardNormalPrior(4).log_prob(z), -0.5 * (log_2pi + z**2).sum(-1))


def test_rsample_is_reparameterized() -> None:
    mean = torch.zeros(3, 2, requires_grad=True)
    diagonal_gaussian(mean, torch.zeros(3, 2)).rsample().sum().backward()
    assert mean.grad is not None and torch.all(mean.grad == 1.0)


def test_rsample_moments() -> None:
    torch.manual_seed(0)
    q = diagonal_gaussian(torch.tensor([[2.0, -1.0]]), torch.tensor([[math.log(0.25), 0.0]]))
    z = q.rsample((200_000,))[:, 0]
    torch.testing.assert_close(z.mean(0), torch.tensor([2.0, -1.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 1.0]), atol=0.01, rtol=0)


def test_bernoulli_log_prob_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])  # (1, 1, 2, 2)
    x = torch.tensor([[[[1.0, 0.0], [0.25, 1.0]]]])
    p = torch.sigmoid(logits)
    by_hand = (x * p.log() + (1 - x) * (1 - p).log()).sum()
    torch.testing.assert_close(Bernoulli().log_prob(x, logits), by_hand.reshape(1))
    torch.testing.assert_close(Bernoulli().mean(logits), p)


def test_bernoulli_log_prob_of_k_samples_by_hand() -> None:
    """Logits for k samples of z, (k, B, C, H, W), against one x per image, (B, C, H, W)."""
    torch.manual_seed(0)
    logits, x = torch.randn(3, 2, 1, 4, 4) * 4, torch.rand(2, 1, 4, 4).bernoulli()
    p = torch.sigmoid(logits.double())
    by_hand = (x * p.log() + (1 - x) * (1 - p).log()).flatten(2).sum(-1)  # (k, B)
    torch.testing.assert_close(Bernoulli().log_prob(x, logits), by_hand.float())


def test_bernoulli_min_prob_caps_each_pixel_cost() -> None:
    """min_prob=1e-5 (the VampPrior code's clamp): a pixel the decoder calls impossible costs
    -log(1e-5) = 11.513 nats, not the ~1000 its logit says."""
    logits = torch.full((1, 1, 1, 2), -1000.0)
    x = torch.tensor([[[[1.0, 0.0]]]])
    cost = -Bernoulli(min_prob=1e-5).log_prob(x, logits)
    torch.testing.assert_close(cost, torch.tensor([-math.log(1e-5) - math.log(1 - 1e-5)]))
    assert Bernoulli(min_prob=1e-5).mean(logits).min().item() == pytest.approx(1e-5)


def test_bernoulli_log_prob_at_extreme_logits_matches_torch_cross_entropy() -> None:
    """Logits from 0 to +-1000 (where e^l overflows float32) against torch's own binary
    cross-entropy in float64: log p is exact and finite at every one."""
    logits = torch.tensor([0.0, 1e-4, -1e-4, 3.0, -3.0, 20.0, -20.0, 100.0, -100.0, 1e3, -1e3])
    logits = logits.repeat(3, 1)  # (3, 11): one row per value of x
    x = torch.tensor([0.0, 1.0, 0.3]).unsqueeze(1).expand(3, 11)
    cost = F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none")
    got = Bernoulli().log_prob(x.reshape(3, 1, 1, 11), logits.reshape(3, 1, 1, 11))
    torch.testing.assert_close(got.double(), -cost.sum(-1), rtol=1e-6, atol=1e-4)


def test_bernoulli_log_prob_of_half_precision_logits_is_float32() -> None:
    """fp16 logits (a 16-mixed decoder's output) of 0 over 3072 pixels: p = 1/2 each, so
    log p = 3072 log(1/2) = -2129.35 by hand. In fp16 the 64-sigmoid products (2^-64)
    would be 0 and log p -inf."""
    logits = torch.zeros(2, 3, 32, 32, dtype=torch.float16)
    x = torch.rand(2, 3, 32, 32).bernoulli()
    got = Bernoulli().log_prob(x, logits)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.full((2,), 3072 * math.log(0.5)))


def test_bernoulli_gradient_is_x_minus_sigmoid() -> None:
    """d log p / d l_p = x_p - sigmoid(l_p), at l = 0 (where |l| has a kink) too."""
    logits = torch.tensor([[[[0.0, 2.5, -2.5, 40.0, -40.0, 0.7]]]], requires_grad=True)
    x = torch.tensor([[[[1.0, 0.0, 1.0, 0.2, 0.9, 0.5]]]])
    (grad,) = torch.autograd.grad(Bernoulli().log_prob(x, logits).sum(), logits)
    torch.testing.assert_close(grad, x - torch.sigmoid(logits.detach()))


@pytest.mark.parametrize("pixels", [1, 7, 96, 784, 3072])
def test_sum_of_logs_matches_float64(pixels: int) -> None:
    torch.manual_seed(pixels)
    values = 0.5 + 0.5 * torch.rand(5, pixels)  # in [1/2, 1)
    expected = values.double().log().sum(-1)
    torch.testing.assert_close(sum_of_logs(values).double(), expected, rtol=0, atol=1e-4)


def test_sum_of_logs_of_many_halves_does_not_underflow() -> None:
    """4096 values of 1/2: products of all of them would be 2^-4096 (0 in float32); groups
    of 64 keep 2^-64. The sum is 4096 log(1/2) = -2839.13 by hand."""
    total = sum_of_logs(torch.full((1, 4096), 0.5))
    assert total.item() == pytest.approx(4096 * math.log(0.5), rel=1e-6)


def test_gaussian_log_prob_of_k_samples_by_hand() -> None:
    """Means for k samples, (k, B, C, H, W), against one x per image, (B, C, H, W)."""
    torch.manual_seed(0)
    mean, x, sigma = torch.rand(3, 2, 1, 4, 4), torch.rand(2, 1, 4, 4), 0.2
    sq = ((x - mean) ** 2).flatten(2).sum(-1)  # (k, B)
    by_hand = -sq / (2 * sigma**2) - 16 * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(Gaussian(sigma).log_prob(x, mean), by_hand)


def test_gaussian_log_prob_by_hand() -> None:
    mean, x, sigma = torch.full((2, 1, 3, 3), 0.5), torch.rand(2, 1, 3, 3), 0.3
    sq = ((x - mean) ** 2).flatten(1).sum(-1)
    by_hand = -sq / (2 * sigma**2) - 9 * math.log(sigma) - 9 * 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(Gaussian(sigma).log_prob(x, mean), by_hand)


def test_gaussian_is_squared_error_up_to_a_constant() -> None:
    x, a, b = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    likelihood = Gaussian(sigma=1.0)
    gap = likelihood.log_prob(x, a) - likelihood.log_prob(x, b)
    expected = -0.5 * (((x - a) ** 2).sum() - ((x - b) ** 2).sum())
    torch.testing.assert_close(gap, expected.reshape(1))


def test_learned_sigma_starts_at_sigma_and_learns() -> None:
    likelihood = GaussianLearnedSigma(sigma=0.5)
    torch.testing.assert_close(likelihood.log_sigma().exp(), torch.tensor(0.5))
    x, mean = torch.rand(4, 1, 5, 5), torch.rand(4, 1, 5, 5)
    expected = Normal(mean, likelihood.log_sigma().exp()).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(likelihood.log_prob(x, mean), expected)
    likelihood.log_prob(x, mean).sum().backward()
    # By hand: d/d log sigma of sum -(x - m)^2 / (2 sigma^2) - log sigma is
    # sum (x - m)^2 / sigma^2 - (pixels), and d log sigma / d raw = sigmoid(raw) (softplus')
    sigma = 0.5
    d_log_sigma = float(((x - mean) ** 2).sum()) / sigma**2 - x.numel()
    d_raw = d_log_sigma * float(torch.sigmoid(likelihood.raw_log_sigma.detach()))
    assert likelihood.raw_log_sigma.grad is not None
    assert float(likelihood.raw_log_sigma.grad) == pytest.approx(d_raw, rel=1e-5)


def test_learned_sigma_has_a_floor() -> None:
    likelihood = GaussianLearnedSigma(sigma=1.0, min_sigma=0.01)
    with torch.no_grad():
        likelihood.raw_log_sigma.fill_(-50.0)
    assert likelihood.log_sigma().exp() >= 0.01


def test_likelihoods_broadcast_over_samples_of_z() -> None:
    x, params = torch.rand(5, 1, 4, 4), torch.randn(3, 5, 1, 4, 4)  # 3 samples of z per image
    for likelihood in (Bernoulli(), Gaussian(0.5), GaussianLearnedSigma()):
        assert likelihood.log_prob(x, params).shape == (3, 5)
        assert likelihood.sample(params).shape == params.shape


def test_invalid_sigma() -> None:
    with pytest.raises(ValueError, match="sigma"):
        Gaussian(sigma=0.0)

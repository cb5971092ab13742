"""The Gaussian with a sigma per pixel (`GaussianPerPixelSigma`), the likelihood that needs
two decoder outputs per pixel: its density against torch's Normal written out pixel by
pixel, its start and floor worked by hand, and one training step through every decoder
with no change to any network."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from tests.conftest import ComposeFn
from vae_lab.evaluation.bits import not_applicable
from vae_lab.models.build import build_vae
from vae_lab.models.components.likelihoods import GaussianPerPixelSigma

pytestmark = pytest.mark.usefixtures("one_thread")


def test_log_prob_is_the_sum_of_each_pixels_normal_log_density() -> None:
    torch.manual_seed(0)
    likelihood = GaussianPerPixelSigma(sigma=0.5, min_sigma=0.01)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)  # (B, C, H, W): 3 channels
    params = torch.randn(7, 2, 6, 4, 5, dtype=torch.float64)  # 7 draws of z, 2C channels
    by_hand = torch.zeros(7, 2, dtype=torch.float64)
    for k in range(7):
        for b in range(2):
            for c in range(3):
                mean, raw = params[k, b, c], params[k, b, 3 + c]  # channel c, then c + C
                offset = math.log(math.expm1(math.log(0.5 / 0.01)))
                sigma = 0.01 * torch.exp(F.softplus(raw + offset))
                by_hand[k, b] += Normal(mean, sigma).log_prob(x[b, c]).sum()
    torch.testing.assert_close(likelihood.log_prob(x, params), by_hand)


def test_sigma_starts_at_sigma_and_stays_above_the_floor() -> None:
    likelihood = GaussianPerPixelSigma(sigma=0.3, min_sigma=0.02)
    params = torch.tensor([0.4, 0.0, 0.0, -1e4]).reshape(1, 4, 1, 1)  # 2 channels' m, then r
    mean, log_sigma = likelihood.split(params)
    torch.testing.assert_close(mean.flatten(), torch.tensor([0.4, 0.0]))
    assert float(log_sigma[0, 0].exp()) == pytest.approx(0.3)  # r = 0: the start
    assert float(log_sigma[0, 1].exp()) == pytest.approx(0.02)  # r -> -inf: the floor
    assert float(likelihood.mean(params + 2.0).max()) == 1.0  # the mean image, in [0, 1]


def test_samples_scatter_by_each_pixels_own_sigma() -> None:
    likelihood = GaussianPerPixelSigma(sigma=1.0, min_sigma=1e-3)
    # mean 0.5 at both pixels; sigma 0.01 at the first, 0.1 at the second (r by hand)
    raw = [math.log(math.expm1(math.log(s / 1e-3))) - math.log(math.expm1(math.log(1e3)))
           for s in (0.01, 0.1)]  # fmt: skip
    params = torch.tensor([[0.5, 0.5, *raw]]).reshape(1, 4, 1, 1).expand(20_000, 4, 1, 1)
    torch.manual_seed(0)
    draws = likelihood.sample(params).flatten(1)
    assert draws.shape == (20_000, 2)
    stds = draws.std(0)
    assert float(stds[0]) == pytest.approx(0.01, rel=0.03)
    assert float(stds[1]) == pytest.approx(0.1, rel=0.03)


def test_half_precision_output_is_scored_in_float32() -> None:
    likelihood = GaussianPerPixelSigma(sigma=0.1)
    x = torch.rand(2, 1, 3, 3)
    params = torch.randn(2, 2, 3, 3) * 0.1
    expected = likelihood.log_prob(x, params.half().float())
    got = likelihood.log_prob(x, params.half())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_it_is_a_density_for_bits_per_dim_of_the_8bit_images() -> None:
    assert "bpd_8bit" not in not_applicable(GaussianPerPixelSigma(), binarized=False)


@pytest.mark.parametrize("model", ["mlp", "conv", "gated_mlp"])
def test_one_training_step_through_each_decoder(compose_cfg: ComposeFn, model: str) -> None:
    """Each decoder, unchanged, gives two channels for a one-channel image; both get a
    gradient from the loss (the mean's and the sigma's), and a step updates the weights."""
    cfg = compose_cfg(f"model={model}", "likelihood=gaussian_pixel_sigma", "latent_dim=3")
    torch.manual_seed(0)
    vae = build_vae(cfg, (1, 28, 28))
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    outputs: list[torch.Tensor] = []
    vae.decoder.register_forward_hook(lambda module, args, out: outputs.append(out))
    loss = vae.training_loss((images, None)).loss
    (params,) = outputs
    assert params.shape == (4, 2, 28, 28)
    params.retain_grad()
    optimizer = vae.configure_optimizers()
    before = [p.detach().clone() for p in vae.decoder.parameters()]
    loss.backward()
    optimizer.step()
    assert math.isfinite(float(loss.detach())) and params.grad is not None
    assert all(bool(params.grad[:, channel].abs().sum() > 0) for channel in (0, 1))
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in vae.parameters())
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.decoder.parameters(), strict=True))
    assert vae.reconstruct((images, None)).shape == (4, 1, 28, 28)  # images, not parameters
    assert vae.sample(3).shape == (3, 1, 28, 28)

"""The importance-weighted bound and the latent statistics, against answers known exactly.

A linear-Gaussian model has everything in closed form: with p(z) = N(0, I) and
p(x|z) = N(Wz + b, s^2 I), the evidence is p(x) = N(b, W W^T + s^2 I) and the posterior is
N(S W^T (x - b) / s^2, S) with S = (I + W^T W / s^2)^-1, diagonal when W's columns are
orthogonal. With q equal to that posterior every importance weight equals p(x), so L_k is
log p(x) exactly for every k; with a worse q, L_1 <= L_k <= log p(x) and L_k -> log p(x).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent

from tests.conftest import ComposeFn
from vae_lab.data.batches import IndexBatches
from vae_lab.evaluation.metrics import active_units, evaluate
from vae_lab.models.build import build_vae
from vae_lab.models.components.gaussian import diagonal_gaussian, standard_normal_kl_per_dim
from vae_lab.models.components.likelihoods import Gaussian, bits_per_dim
from vae_lab.models.components.prior import StandardNormalPrior
from vae_lab.models.vae import VAE

SIGMA = 0.5
W = torch.tensor([[1.0, 0.0], [0.0, 0.8], [1.0, 0.0], [0.0, -0.8]])  # orthogonal columns
B = torch.tensor([0.1, -0.2, 0.3, 0.0])
POSTERIOR_COV = torch.linalg.inv(torch.eye(2) + W.T @ W / SIGMA**2)  # diagonal


class LinearDecoder(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (..., 2) -> (..., 1, 2, 2)
        return (z @ W.T + B).unflatten(-1, (1, 2, 2))


class ExactPosterior(nn.Module):
    """The true posterior of the linear-Gaussian model, its mean moved by `shift`."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> Independent:
        mean = (x.flatten(1) - B) @ W @ POSTERIOR_COV / SIGMA**2 + self.shift
        return diagonal_gaussian(mean, POSTERIOR_COV.diagonal().log().expand_as(mean))


def linear_gaussian_vae(shift: float = 0.0) -> VAE:
    return VAE(
        encoder=ExactPosterior(shift),
        decoder=LinearDecoder(),
        likelihood=Gaussian(sigma=SIGMA),
        prior=StandardNormalPrior(2),
        optimizer=torch.optim.Adam,
    )


def log_evidence(x: torch.Tensor) -> torch.Tensor:
    cov = W @ W.T + SIGMA**2 * torch.eye(4)
    return torch.distributions.MultivariateNormal(B, cov).log_prob(x.flatten(1))


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(0)
    z = torch.randn(64, 2)
    return (z @ W.T + B + SIGMA * torch.randn(64, 4)).reshape(64, 1, 2, 2)


@pytest.mark.parametrize("k", [1, 7, 100])
def test_with_the_exact_posterior_every_k_gives_log_p_x(x: torch.Tensor, k: int) -> None:
    bound = linear_gaussian_vae().iw_log_likelihood((x, None), k)
    torch.testing.assert_close(bound, log_evidence(x), atol=1e-4, rtol=1e-5)


def test_scoring_in_slices_keeps_each_image_its_own_bound() -> None:
    """61 images, k = 100: 33 draws a chunk (2048 rows), scored in slices of 15 images (the
    last of one) on a CPU. Every image must still get its own log p(x)."""
    torch.manual_seed(3)
    z = torch.randn(61, 2)
    x = (z @ W.T + B + SIGMA * torch.randn(61, 4)).reshape(61, 1, 2, 2)
    bound = linear_gaussian_vae().iw_log_likelihood((x, None), 100, decode_batch=2048)
    torch.testing.assert_close(bound, log_evidence(x), atol=1e-4, rtol=1e-5)


def test_with_a_worse_posterior_the_bound_tightens_towards_log_p_x(x: torch.Tensor) -> None:
    torch.manual_seed(1)
    model, exact = linear_gaussian_vae(shift=0.3), log_evidence(x).mean()
    repeated = x.repeat(200, 1, 1, 1)  # many draws per image, to average the noise away
    elbo = model.elbo_terms((repeated, None)).elbo.mean()
    l_1 = model.iw_log_likelihood((repeated, None), 1)
    bounds = {k: model.iw_log_likelihood((x, None), k).mean() for k in (10, 5000)}
    # a bound in expectation: one estimate may pass log p(x) by its noise, ~0.003 here
    assert elbo < bounds[10] < bounds[5000] < exact + 0.01
    # L_1 is the ELBO up to Monte Carlo noise (its KL is sampled, the ELBO's exact)
    assert l_1.mean() == pytest.approx(float(elbo), abs=4 * float(l_1.std()) / len(l_1) ** 0.5)
    assert bounds[5000] == pytest.approx(float(exact), abs=0.02)


def test_chunking_the_samples_changes_memory_not_the_estimate(x: torch.Tensor) -> None:
    model = linear_gaussian_vae(shift=0.7)
    torch.manual_seed(2)
    whole = model.iw_log_likelihood((x, None), 300, decode_batch=300 * len(x))
    torch.manual_seed(2)
    chunked = model.iw_log_likelihood((x, None), 300, decode_batch=len(x))  # one per call
    assert whole.shape == chunked.shape == (len(x),)
    # other draws, same estimator: agreement within Monte Carlo noise
    assert (whole - chunked).abs().mean() < 0.05


def test_the_log_sum_exp_survives_tiny_weights() -> None:
    far = torch.full((4, 1, 2, 2), 40.0)  # log p(x) = -7139: e^-7139 underflows
    exact = log_evidence(far)
    assert bool((exact < -7000).all())
    # with the exact posterior every weight is p(x): the bound is log p(x) to float32's
    # relative precision; with a shifted one, each image's estimate is within a few nats of
    # it (below it only on average: one draw of L_50 may land above; measured, -7140.3 to
    # -7138.9 against -7139.0), where an underflowing sum would give -inf
    bound = linear_gaussian_vae().iw_log_likelihood((far, None), 50)
    torch.testing.assert_close(bound, exact, rtol=1e-5, atol=0.0)
    shifted = linear_gaussian_vae(shift=0.7).iw_log_likelihood((far, None), 50)
    assert bool(((shifted - exact).abs() < 5).all())


def test_active_units_count_the_dims_whose_mean_varies_over_the_data() -> None:
    torch.manual_seed(0)
    spread = torch.tensor([1.0, 0.5, 0.2, 0.05, 0.0])  # std of E[z_d|x] over the data
    means = torch.randn(20_000, 5) * spread + torch.tensor([0.0, 3.0, -1.0, 2.0, 7.0])
    count, variances = active_units(means)
    assert count == 3  # variances 1, 0.25, 0.04 pass the 0.01 threshold; 0.0025 and 0 do not
    torch.testing.assert_close(variances, spread**2, atol=2e-3, rtol=0.05)


def test_kl_per_dim_is_the_closed_form_term_of_each_dim() -> None:
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2, by hand for each dim
    q = diagonal_gaussian(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[0.0, 0.0, math.log(4)]]))
    expected = torch.tensor([[0.0, 0.5, (4 + 4 - 1 - math.log(4)) / 2]])
    torch.testing.assert_close(standard_normal_kl_per_dim(q), expected)
    torch.testing.assert_close(StandardNormalPrior(3).kl(q, q.mean), expected.sum(-1))


def test_bits_per_dim_converts_nats_per_image() -> None:
    # a code of one bit per pixel: 784 ln 2 nats for a 28x28 image
    assert float(bits_per_dim(torch.tensor(784 * math.log(2)), 784)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("likelihood", "pixels", "has_bpd"),
    [("bernoulli", "binary", True), ("bernoulli", "8-bit", False), ("gaussian", "binary", False)],
)
def test_bits_per_dim_only_where_a_probability_mass_scores_binary_images(
    compose_cfg: ComposeFn, likelihood: str, pixels: str, has_bpd: bool
) -> None:
    # -log p is a code length only for a pmf (Bernoulli) over the 0/1 images it is a pmf of:
    # a model trained on binarized images (`data=binarized`, what evaluate passes on)
    model = build_vae(compose_cfg(f"likelihood={likelihood}", "latent_dim=2"), (1, 28, 28))
    images = torch.randint(0, 256, (40, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)
    if pixels == "binary":
        images = (images >= 128).to(torch.uint8) * 255
    batches = IndexBatches(images, torch.zeros(40, dtype=torch.long), 20, shuffle=False)
    result = evaluate(model, batches, k=5, binarized=pixels == "binary")
    if has_bpd:
        assert result.bpd == pytest.approx(result.iw_nll / (784 * math.log(2)), rel=1e-6)
    else:
        assert result.bpd is None


def test_the_bound_under_bf16_autocast_is_the_fp32_bound(compose_cfg: ComposeFn) -> None:
    # A small MLP VAE, its decoder's logits scaled up 20-fold to be as confident as a
    # trained model's, scoring binary images drawn from itself: log-weights of a few hundred
    # nats. Left to bf16 autocast, the bound moves by up to 0.34 nats here (measured).
    torch.manual_seed(0)
    model = build_vae(compose_cfg("latent_dim=4"), (1, 28, 28))
    last = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(20.0)
        last.bias.mul_(20.0)
        x = torch.bernoulli(model.decode(torch.randn(16, 4)))
    torch.manual_seed(3)
    full = model.iw_log_likelihood((x, None), 50)
    torch.manual_seed(3)  # the same draws of z
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.iw_log_likelihood((x, None), 50)
    assert -600 < float(full.mean()) < -200
    assert mixed.dtype == torch.float32 and (mixed - full).abs().max() < 0.05


def test_evaluate_decodes_in_the_devices_chunks_not_the_saved_ones(compose_cfg: ComposeFn) -> None:
    # a run trained before eval.decode_batch could be null saved 20,000 rows per call
    model = build_vae(compose_cfg("latent_dim=2", "eval.decode_batch=20000"), (1, 28, 28))
    assert model.iw_decode_batch == 20_000
    rows: list[int] = []  # latent codes per decoder call

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        rows.append(inputs[0][..., 0].numel())

    model.decoder.register_forward_pre_hook(count)
    images = torch.zeros(100, 1, 28, 28, dtype=torch.uint8)
    batches = IndexBatches(images, torch.zeros(100, dtype=torch.long), 100, shuffle=False)
    evaluate(model, batches, k=100)  # 100 x 100 rows: one call of 10,000 at the saved size
    # on a CPU: 2048 // 100 = 20 samples of the 100 images per call, five times
    assert max(rows) == 2000
    assert sum(rows) == 100 * 100 + 100  # the bound's rows, and the ELBO's one sample each
    rows.clear()
    evaluate(model, batches, k=100, decode_batch=10_000)  # a size asked for is honoured
    assert max(rows) == 10_000

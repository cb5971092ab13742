"""A latent hierarchy on the model API (model=hvae, conv_hvae).

The centrepiece is a two-level model whose every conditional is linear-Gaussian,

    z2 ~ N(0, I),  z1 | z2 ~ N(A z2 + a, diag(s1^2)),  x | z1, z2 ~ N(B z1 + C z2 + b, sigma^2 I),

so log p(x) is a Gaussian marginal in closed form, and so is the exact posterior: the
model's ELBO stays under log p(x), its importance-weighted bound climbs to it as k grows,
and with the exact posterior as the encoder both equal log p(x) for every draw. Then the
bound's log-weights of the real networks against a float64 sum over the layers written out
here, the stack posterior and prior against hand-written two-step samplers, and every
option on the tiny data set: each prior, each likelihood, objective=iwae, the KL schedules,
early stopping, resume, evaluate and sample.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal

import vae_lab
from tests.conftest import QUICK, ComposeFn, compose_tiny
from vae_lab import sample
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.cli.errors import UserError
from vae_lab.data.batches import IndexBatches
from vae_lab.evaluation import pictures
from vae_lab.evaluation.metrics import evaluate
from vae_lab.models.build import build_vae
from vae_lab.models.components.gaussian import diagonal_gaussian
from vae_lab.models.components.hierarchical_prior import HierarchicalPrior
from vae_lab.models.components.hvae import GaussianConditional
from vae_lab.models.components.latent_stack import (
    LatentStack,
    as_stack,
    concatenate_posteriors,
    layer_names,
)
from vae_lab.models.components.likelihoods import Gaussian
from vae_lab.models.components.prior import StandardNormalPrior
from vae_lab.models.core import VAECore
from vae_lab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
slow = pytest.mark.slow  # trains models of its own (`make test-slow`)

D2, D1 = 2, 3  # the top layer z2 and the bottom layer z1
X_SHAPE = (1, 2, 3)  # x: 6 dims
X_DIM = math.prod(X_SHAPE)
SIGMA = 0.7  # p(x | z1, z2)'s standard deviation
LOG_2PI = math.log(2 * math.pi)


# --- the linear-Gaussian model --------------------------------------------------------------


class LinearGaussian:
    """The parameters of the linear-Gaussian two-level model, and its closed forms."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)

        def draw(*shape: int, scale: float = 1.0) -> torch.Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

        self.A, self.a = draw(D1, D2), draw(D1, scale=0.5)
        self.log_var1 = draw(D1, scale=0.3) - 0.5  # p(z1|z2)'s log-variances
        self.B, self.C, self.b = draw(X_DIM, D1), draw(X_DIM, D2), draw(X_DIM, scale=0.5)

    def joint_prior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of u = [z2, z1] under p(z2) p(z1|z2)."""
        s1 = torch.diag(self.log_var1.exp())
        mean = torch.cat([torch.zeros(D2, dtype=torch.float64), self.a])
        cov = torch.cat(
            [
                torch.cat([torch.eye(D2, dtype=torch.float64), self.A.T], dim=1),
                torch.cat([self.A, self.A @ self.A.T + s1], dim=1),
            ]
        )
        return mean, cov

    def M(self) -> torch.Tensor:
        """x's mean is M u + b for u = [z2, z1]."""
        return torch.cat([self.C, self.B], dim=1)

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), x (N, X_DIM): the marginal N(M mu_u + b, M Sigma_u M^T + sigma^2 I)."""
        mean, cov = self.joint_prior()
        M = self.M()
        marginal = MultivariateNormal(
            M @ mean + self.b, M @ cov @ M.T + SIGMA**2 * torch.eye(X_DIM, dtype=torch.float64)
        )
        return marginal.log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (N, D2 + D1) and covariance of p(u | x), u = [z2, z1]."""
        mean, cov = self.joint_prior()
        M, precision = self.M(), torch.linalg.inv(cov)
        post_cov = torch.linalg.inv(precision + M.T @ M / SIGMA**2)
        post_mean = (precision @ mean + (x - self.b) @ M / SIGMA**2) @ post_cov.T
        return post_mean, post_cov


class LinearConditional(nn.Module):
    """p(z1|z2) = N(A z2 + a, diag(exp(log_var1)))."""

    def __init__(self, lg: LinearGaussian) -> None:
        super().__init__()
        self.in_dim, self.latent_dim = D2, D1
        self.lg = lg

    def forward(self, z2: torch.Tensor) -> Independent:
        mean = z2 @ self.lg.A.T + self.lg.a
        return diagonal_gaussian(mean, self.lg.log_var1.expand_as(mean))


class LinearDecoder(nn.Module):
    """p(x | z1, z2)'s mean, B z1 + C z2 + b, as an image (..., *X_SHAPE)."""

    def __init__(self, lg: LinearGaussian) -> None:
        super().__init__()
        self.lg = lg

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z2, z1 = z.split([D2, D1], dim=-1)
        return (z1 @ self.lg.B.T + z2 @ self.lg.C.T + self.lg.b).unflatten(-1, X_SHAPE)


class LinearEncoder(nn.Module):
    """q(z2|x) = N(E2 x + e2, diag), q(z1|x, z2) = N(E1 x + F z2 + e1, diag): linear, and
    not the exact posterior (so the ELBO has a gap)."""

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def draw(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float64) * 0.3

        self.E2, self.e2, self.v2 = draw(D2, X_DIM), draw(D2), draw(D2) - 1.0
        self.E1, self.F, self.e1, self.v1 = draw(D1, X_DIM), draw(D1, D2), draw(D1), draw(D1) - 1.0

    @classmethod
    def near_exact(cls, lg: LinearGaussian, perturbation: float, seed: int = 2) -> LinearEncoder:
        """The exact posterior's means (linear in x and z2) with their diagonal variances,
        every coefficient then moved by `perturbation` times a standard normal draw."""
        encoder = cls()
        mean, cov = lg.joint_prior()
        M, precision = lg.M(), torch.linalg.inv(cov)
        post_cov = torch.linalg.inv(precision + M.T @ M / SIGMA**2)
        G = post_cov @ M.T / SIGMA**2  # E[u | x] = G x + g
        g = post_cov @ (precision @ mean - M.T @ lg.b / SIGMA**2)
        s22, s12, s11 = post_cov[:D2, :D2], post_cov[D2:, :D2], post_cov[D2:, D2:]
        gain = s12 @ torch.linalg.inv(s22)
        exact = {
            "E2": G[:D2], "e2": g[:D2], "v2": torch.diagonal(s22).log(),
            "E1": G[D2:] - gain @ G[:D2], "F": gain, "e1": g[D2:] - gain @ g[:D2],
            "v1": torch.diagonal(s11 - gain @ s12.T).log(),
        }  # fmt: skip
        rng = torch.Generator().manual_seed(seed)
        for name, value in exact.items():
            noise = torch.randn(value.shape, generator=rng, dtype=torch.float64)
            setattr(encoder, name, value + perturbation * noise)
        return encoder

    def forward(self, x: torch.Tensor) -> LatentStack:
        flat = x.flatten(1)
        top = diagonal_gaussian(flat @ self.E2.T + self.e2, self.v2.expand(len(flat), D2))

        def q_z1(z2: torch.Tensor) -> Independent:
            mean = flat @ self.E1.T + z2 @ self.F.T + self.e1  # (..., B, D1)
            return diagonal_gaussian(mean, self.v1.expand_as(mean))

        return LatentStack(top, [q_z1], [D2, D1])


class ExactEncoder(nn.Module):
    """The exact posterior p(z2|x) p(z1|x, z2), each a full-covariance Gaussian."""

    def __init__(self, lg: LinearGaussian) -> None:
        super().__init__()
        self.lg = lg

    def forward(self, x: torch.Tensor) -> LatentStack:
        mean, cov = self.lg.posterior(x.flatten(1))
        m2, m1 = mean[:, :D2], mean[:, D2:]
        s22, s12, s11 = cov[:D2, :D2], cov[D2:, :D2], cov[D2:, D2:]
        gain = s12 @ torch.linalg.inv(s22)  # E[z1 | x, z2] = m1 + gain (z2 - m2)
        top = Independent(MultivariateNormal(m2, s22), 0)

        def q_z1(z2: torch.Tensor) -> Independent:
            return Independent(MultivariateNormal(m1 + (z2 - m2) @ gain.T, s11 - gain @ s12.T), 0)

        return LatentStack(top, [q_z1], [D2, D1])


def linear_model(lg: LinearGaussian, encoder: nn.Module) -> VAECore:
    prior = HierarchicalPrior(StandardNormalPrior(D2), [LinearConditional(lg)])
    model = VAECore(encoder, LinearDecoder(lg), Gaussian(SIGMA), prior, input_shape=X_SHAPE)
    model = model.double()
    # log sigma was stored in float32 when built; float64 throughout for the closed forms
    model.likelihood.fixed_log_sigma.fill_(math.log(SIGMA))
    return model


def _x(n: int = 3, seed: int = 5) -> torch.Tensor:
    """Images of the linear model: draws of x from it, so log p(x) is typical."""
    g = torch.Generator().manual_seed(seed)
    lg = LinearGaussian()
    z2 = torch.randn(n, D2, generator=g, dtype=torch.float64)
    z1 = z2 @ lg.A.T + lg.a + (0.5 * lg.log_var1).exp() * torch.randn(n, D1, generator=g).double()
    x = z1 @ lg.B.T + z2 @ lg.C.T + lg.b + SIGMA * torch.randn(n, X_DIM, generator=g).double()
    return x.unflatten(-1, X_SHAPE)


def test_the_exact_posterior_makes_elbo_and_iw_bound_equal_log_evidence_for_every_draw() -> None:
    lg = LinearGaussian()
    model = linear_model(lg, ExactEncoder(lg))
    x = _x()
    log_px = lg.log_evidence(x.flatten(1))  # (3,)
    torch.manual_seed(0)
    terms = model.elbo_terms((x.repeat(50, 1, 1, 1), None))  # 50 draws of each image
    assert terms.elbo.view(50, 3) == pytest.approx(log_px.expand(50, 3), abs=1e-9)
    posterior = model.posterior(x, None)
    w = model.log_weights(x, None, posterior, 40)  # (40, 3): every weight is p(x)
    log_w = w.log_px_z + w.log_pz - w.log_qz
    assert log_w == pytest.approx(log_px.expand(40, 3), abs=1e-9)
    for k in (1, 7, 100):  # reduced in float32, as the model reports it
        bound = model.iw_log_likelihood((x, None), k).double()
        assert bound == pytest.approx(log_px, abs=1e-5)


def test_the_elbo_is_under_the_log_evidence_and_the_iw_bound_climbs_to_it() -> None:
    lg = LinearGaussian()
    model = linear_model(lg, LinearEncoder.near_exact(lg, perturbation=0.1))
    x = _x(1)
    log_px = float(lg.log_evidence(x.flatten(1)))
    torch.manual_seed(0)
    n = 20_000
    elbo = model.elbo_terms((x.expand(n, *X_SHAPE), None)).elbo  # n one-draw estimates
    mean, se = float(elbo.mean()), float(elbo.std() / math.sqrt(n))
    gap = log_px - mean
    assert gap > 10 * se and gap > 0.5  # a real gap, far outside the noise
    bounds = {}
    for k in (1, 10, 100, 1000):
        reps = 2000 if k < 1000 else 400
        ll = model.iw_log_likelihood((x.expand(reps, *X_SHAPE), None), k)
        bounds[k] = (float(ll.mean()), float(ll.std() / math.sqrt(reps)))
    assert bounds[1][0] == pytest.approx(mean, abs=5 * (bounds[1][1] + se))  # L_1 = ELBO
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        (lo, se_lo), (hi, se_hi) = bounds[small], bounds[large]
        assert hi > lo - 3 * (se_lo + se_hi)  # non-decreasing in k
    assert bounds[1000][0] < log_px + 3 * bounds[1000][1]  # still a lower bound
    assert log_px - bounds[1000][0] < gap / 10  # and close: most of the gap is gone
    assert bounds[10][0] > bounds[1][0] + 3 * (bounds[1][1] + bounds[10][1])


def test_the_linear_models_log_weights_are_the_joint_gaussian_densities() -> None:
    """log p(x|z) + log p(z) is log N([z, x]) of the joint; log q(z|x) the encoder's own."""
    lg = LinearGaussian()
    encoder = LinearEncoder()
    model = linear_model(lg, encoder)
    x = _x(4)
    torch.manual_seed(1)
    w = model.log_weights(x, None, model.posterior(x, None), 5)  # each (5, 4)
    mean, cov = lg.joint_prior()
    M = lg.M()
    joint = MultivariateNormal(
        torch.cat([mean, M @ mean + lg.b]),
        torch.cat(
            [
                torch.cat([cov, cov @ M.T], dim=1),
                torch.cat([M @ cov, M @ cov @ M.T + SIGMA**2 * torch.eye(X_DIM).double()], dim=1),
            ]
        ),
    )
    u_x = torch.cat([w.z, x.flatten(1).expand(5, 4, X_DIM)], dim=-1)
    assert w.log_px_z + w.log_pz == pytest.approx(joint.log_prob(u_x), abs=1e-9)


# --- the stack posterior and prior against hand-written samplers -----------------------------


def test_the_stack_samples_layer_by_layer_and_scores_every_layer() -> None:
    encoder = LinearEncoder()
    x = _x(4)
    stack = encoder(x)
    torch.manual_seed(3)
    z = stack.rsample((6,))  # (6, 4, D2 + D1)
    # by hand: z2 ~ q(z2|x), then z1 ~ q(z1|x, z2) for each draw, from the same noise
    torch.manual_seed(3)
    flat = x.flatten(1)
    m2, s2 = flat @ encoder.E2.T + encoder.e2, (0.5 * encoder.v2).exp()
    z2 = m2 + s2 * torch.randn(6, 4, D2, dtype=torch.float64)
    m1 = flat @ encoder.E1.T + z2 @ encoder.F.T + encoder.e1
    z1 = m1 + (0.5 * encoder.v1).exp() * torch.randn(6, 4, D1, dtype=torch.float64)
    assert z.shape == (6, 4, D2 + D1) and stack.event_shape == (D2 + D1,)
    assert torch.equal(z, torch.cat([z2, z1], dim=-1))

    def log_normal(v: torch.Tensor, m: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        return (-0.5 * (LOG_2PI + log_var + (v - m) ** 2 / log_var.exp())).sum(-1)

    by_hand = [log_normal(z2, m2, encoder.v2), log_normal(z1, m1, encoder.v1)]
    for scored in (z, z.clone()):  # the draw just made (cached), and a copy (recomputed)
        layers = stack.layer_log_probs(scored)
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(layers, by_hand, strict=True))
        assert torch.allclose(stack.log_prob(scored), by_hand[0] + by_hand[1], atol=1e-12)
    # the mean: top-down, each layer's mean given the means above
    assert torch.allclose(
        stack.mean, torch.cat([m2, flat @ encoder.E1.T + m2 @ encoder.F.T + encoder.e1], -1)
    )


def test_a_single_latent_posterior_is_a_stack_of_one_layer() -> None:
    q = diagonal_gaussian(torch.randn(4, 5), torch.randn(4, 5))
    stack = as_stack(q)
    assert stack.layer_dims == [5] and stack.top is q
    z = q.rsample()
    [layer] = stack.layer_log_probs(z)
    assert torch.equal(layer, q.log_prob(z)) and torch.equal(stack.mean, q.mean)
    assert layer_names(1) == ["z1"] and layer_names(2) == ["z2", "z1"]
    joined = concatenate_posteriors([q, q])
    assert type(joined) is Independent and joined.mean.shape == (8, 5)


def test_stacks_encoded_in_chunks_join_into_one() -> None:
    encoder = LinearEncoder()
    x = _x(5)
    whole, parts = encoder(x), [encoder(x[:2]), encoder(x[2:])]
    joined = concatenate_posteriors(parts)
    assert isinstance(joined, LatentStack) and joined.batch_shape == (5,)
    assert torch.allclose(joined.mean, whole.mean, atol=1e-12)
    z = whole.rsample((3,))
    assert torch.allclose(joined.log_prob(z), whole.log_prob(z), atol=1e-12)


def test_the_hierarchical_prior_samples_scores_and_completes_layer_by_layer() -> None:
    lg = LinearGaussian()
    prior = HierarchicalPrior(StandardNormalPrior(D2), [LinearConditional(lg)]).double()
    assert prior.layer_dims == [D2, D1] and prior.latent_dim == D2 + D1
    z = prior.sample(7, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    z2 = torch.randn(7, D2, generator=g).double()
    z1 = z2 @ lg.A.T + lg.a + (0.5 * lg.log_var1).exp() * torch.randn(7, D1, generator=g).double()
    assert torch.allclose(z, torch.cat([z2, z1], dim=-1))
    mean, cov = lg.joint_prior()
    assert torch.allclose(prior.log_prob(z), MultivariateNormal(mean, cov).log_prob(z), atol=1e-10)
    completed = prior.complete(z2)
    assert torch.equal(completed[:, :D2], z2)
    assert torch.allclose(completed[:, D2:], z2 @ lg.A.T + lg.a)
    # the KL per layer at a draw: log q - log p of each layer, summing to the KL term
    q = LinearEncoder()(_x(7))
    draw = q.rsample()
    per_layer = prior.kl_per_layer(q, draw)
    assert per_layer.shape == (7, 2)
    assert torch.allclose(per_layer.sum(-1), q.log_prob(draw) - prior.log_prob(draw))


def test_a_conditional_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"in_dim=3, but the layers above it have 2 dims"):
        HierarchicalPrior(StandardNormalPrior(2), [GaussianConditional(3, 4)])


# --- the real networks: the bound's log-weights against a float64 sum over layers -----------


def _bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return (
        (
            x * torch.nn.functional.logsigmoid(logits)
            + (1 - x) * torch.nn.functional.logsigmoid(-logits)
        )
        .flatten(-3)
        .sum(-1)
    )


def _gauss(v: torch.Tensor, q: Independent) -> torch.Tensor:
    m, s = q.base_dist.loc, q.base_dist.scale
    return (-0.5 * LOG_2PI - torch.log(s) - 0.5 * ((v - m) / s) ** 2).sum(-1)


@pytest.mark.parametrize("model_name", ["hvae", "conv_hvae"])
def test_the_bounds_log_weights_are_the_sum_over_layers(
    compose_cfg: ComposeFn, model_name: str
) -> None:
    cfg = compose_cfg(f"model={model_name}", "latent_dim=3", "model.encoder.z1_dim=4")
    torch.manual_seed(0)
    model = build_vae(cfg, [1, 28, 28]).double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64).round()
    torch.manual_seed(1)
    w = model.log_weights(x, None, model.posterior(x, None), 5)  # each (5, 2)
    z2, z1 = w.z[..., :3], w.z[..., 3:]
    assert w.z.shape == (5, 2, 7)
    enc, prior = model.encoder, model.prior
    # log q(z2|x) + log q(z1|x, z2), each layer's Gaussian written out
    q_z2 = enc.q_z2(x.flatten(1) if model_name == "hvae" else x)
    x_features = enc.q_z1_x(x.flatten(1) if model_name == "hvae" else x)
    log_q = _gauss(z2, q_z2) + _gauss(z1, enc.q_z1(x_features, z2))
    # log p(z2) + log p(z1|z2): N(0, I) on top, the conditional network below
    log_p = (-0.5 * LOG_2PI - 0.5 * z2**2).sum(-1) + _gauss(z1, prior.conditionals[0](z2))
    log_px_z = _bernoulli_log_prob(x, model.decoder(w.z))
    assert torch.allclose(w.log_qz, log_q, atol=1e-9)
    assert torch.allclose(w.log_pz, log_p, atol=1e-9)
    assert torch.allclose(w.log_px_z, log_px_z, atol=1e-9)
    # the bound is their log-mean-exp (reduced in float32, as the model reports it)
    torch.manual_seed(1)
    bound = model.iw_log_likelihood((x, None), 5).double()
    by_hand = torch.logsumexp(log_px_z + log_p - log_q, 0) - math.log(5)
    assert torch.allclose(bound, by_hand, rtol=0, atol=1e-3)


# --- the networks ---------------------------------------------------------------------------


def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_the_mlp_networks_are_the_papers_at_z_40(compose_cfg: ComposeFn) -> None:
    torch.manual_seed(0)
    model = build_vae(compose_cfg("model=hvae", "latent_dim=40"), [1, 28, 28])
    enc, dec, p_z1 = model.encoder, model.decoder, model.prior.conditionals[0]
    gated = [(784, 300)] * 2 + [(300, 300)] * 2  # GatedDense: two Linear maps each
    assert _linear_shapes(enc.q_z2) == [*gated, (300, 40), (300, 40)]
    assert _linear_shapes(enc.q_z1_x) == [(784, 300)] * 2
    assert _linear_shapes(enc.q_z1) == [(40, 300)] * 2 + [(600, 300)] * 2 + [(300, 40)] * 2
    assert _linear_shapes(p_z1) == [(40, 300)] * 2 + [(300, 300)] * 2 + [(300, 40)] * 2
    assert _linear_shapes(dec) == [(40, 300)] * 4 + [(600, 300)] * 2 + [(300, 784)]
    # He-normal on every linear weight: std sqrt(2 / fan_in)
    for m in [*enc.modules(), *dec.modules(), *p_z1.modules()]:
        if isinstance(m, nn.Linear) and m.weight.numel() > 10_000:
            assert float(m.weight.std()) == pytest.approx(math.sqrt(2 / m.in_features), rel=0.05)


@pytest.mark.parametrize(
    ("likelihood", "channels"), [("bernoulli", 1), ("gaussian_pixel_sigma", 2)]
)
def test_the_conv_networks_are_the_papers_at_z_40(
    compose_cfg: ComposeFn, likelihood: str, channels: int
) -> None:
    cfg = compose_cfg("model=conv_hvae", "latent_dim=40", f"likelihood={likelihood}")
    model = build_vae(cfg, [1, 28, 28])
    enc, dec = model.encoder, model.decoder
    assert _linear_shapes(enc.q_z2) == [(294, 40), (294, 40)]  # 6 x 7 x 7 features
    assert _linear_shapes(enc.q_z1) == [(40, 294)] * 2 + [(588, 300)] * 2 + [(300, 40)] * 2
    assert _linear_shapes(dec) == [(40, 300)] * 4 + [(600, 784)] * 2
    convs = [m for m in dec.convs.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs[::2][:4]] == [(1, 64)] + [(64, 64)] * 3
    assert (convs[-1].in_channels, convs[-1].out_channels, convs[-1].kernel_size) == (
        64,
        channels,
        (1, 1),
    )
    z = torch.randn(3, 2, 80)  # (K, B, z2 + z1)
    assert dec(z).shape == (3, 2, channels, 28, 28)


def test_the_conv_sizes_come_from_the_image(compose_cfg: ComposeFn) -> None:
    model = build_vae(compose_cfg("model=conv_hvae", "latent_dim=3"), [1, 20, 20])
    assert _linear_shapes(model.encoder.q_z2)[0] == (6 * 5 * 5, 3)
    posterior = model.posterior(torch.rand(2, 1, 20, 20), None)
    z = posterior.rsample((4,))
    assert z.shape == (4, 2, 6) and model.likelihood_params(z, None).shape == (4, 2, 1, 20, 20)


def test_the_layers_can_differ_in_size(compose_cfg: ComposeFn) -> None:
    model = build_vae(
        compose_cfg("model=hvae", "latent_dim=3", "model.encoder.z1_dim=5"), [1, 28, 28]
    )
    assert model.prior.layer_dims == [3, 5] and model.prior.latent_dim == 8
    posterior = model.encode((torch.rand(2, 1, 28, 28), None))
    assert as_stack(posterior).layer_dims == [3, 5] and posterior.mean.shape == (2, 8)
    assert model.sample(3).shape == (3, 1, 28, 28)


def test_the_vampprior_on_top_encodes_its_pseudo_inputs_with_q_z2_alone(
    compose_cfg: ComposeFn,
) -> None:
    cfg = compose_cfg("model=hvae", "latent_dim=3", "prior=vampprior", "prior.pseudo_inputs=5")
    model = build_vae(cfg, [1, 28, 28])
    calls: list[int] = []
    model.encoder.q_z1_x.register_forward_hook(lambda *_: calls.append(1))
    model.prior.log_prob(torch.randn(4, 6))  # the mixture of q(z2 | u_k) over the top layer
    model.prior.sample(4)
    assert calls == []  # q(z1 | x, z2)'s view of x is only computed where z1 is needed
    model.elbo_terms((torch.rand(2, 1, 28, 28), None))
    assert calls == [1]  # once per pass, though z1 is drawn and then scored


def test_traversals_sweep_the_top_layer_and_complete_the_layers_below(
    compose_cfg: ComposeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_vae(
        compose_cfg("model=hvae", "latent_dim=3", "model.encoder.z1_dim=4"), [1, 28, 28]
    )
    decoded: list[torch.Tensor] = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda z, *a: decoded.append(z) or decode(z, *a))
    z0 = model.encode((torch.rand(1, 1, 28, 28), None)).mean[0]  # (7,)
    grid = pictures.traversals(model, z0, [0, 2], span=2.0, steps=5)
    assert grid.shape[-1] == 5 * (28 + 2) + 2  # five tiles a row, padded by 2
    [z] = decoded
    top = z[:, :3].view(2, 5, 3)
    assert torch.allclose(top[0, :, 0], torch.linspace(-2, 2, 5))  # row 1 sweeps dim 0
    assert torch.allclose(top[0, :, 1:], z0[1:3].expand(5, 2))  # the rest of z2 stays
    assert torch.allclose(top[1, :, 2], torch.linspace(-2, 2, 5))
    assert torch.allclose(z[:, 3:], model.prior.conditionals[0](z[:, :3]).mean)  # E[z1 | z2]


def test_the_stack_builds_a_graph_only_where_its_maker_and_its_user_both_have_gradients(
    compose_cfg: ComposeFn,
) -> None:
    model = build_vae(compose_cfg("model=hvae", "latent_dim=3"), [1, 28, 28])
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        made_without = model.posterior(x, None)
    assert not made_without.rsample().requires_grad and not made_without.mean.requires_grad
    made_with = model.posterior(x, None)
    assert made_with.rsample().requires_grad  # as in training
    with torch.no_grad():
        assert not made_with.mean.requires_grad and not made_with.rsample().requires_grad


def test_a_single_latent_prior_is_one_layer_and_completes_nothing() -> None:
    prior = StandardNormalPrior(4)
    q = diagonal_gaussian(torch.randn(3, 4), torch.randn(3, 4))
    z = q.rsample()
    assert prior.layer_dims == [4] and torch.equal(prior.complete(z), z)
    assert torch.equal(prior.kl_per_layer(q, z), prior.kl(q, z)[:, None])


# --- the options, the whole way -------------------------------------------------------------

PRIORS = {
    "standard_normal": (),
    "mog": ("prior.components=3",),
    "vampprior": ("prior.pseudo_inputs=5",),
}
LIKELIHOODS = sorted(p.stem for p in (Path(CONFIG_DIR) / "likelihood").glob("*.yaml"))


def _test_split(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from vae_lab.data.fashion_mnist import FashionMNISTDataModule

    datamodule = FashionMNISTDataModule(root=str(data_root), val_size=50)
    datamodule.load()
    return datamodule.splits["test"]


def _sample_cfg(run: Path, data_root: Path, out: Path, *overrides: str):  # type: ignore[no-untyped-def]
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "sample",
            [f"ckpt_path={run}", f"data.root={data_root}", f"sample.out={out}", *overrides],
        )


@pytest.mark.parametrize("model_name", ["hvae", "conv_hvae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_each_likelihood_takes_a_training_step(
    compose_cfg: ComposeFn, model_name: str, likelihood: str
) -> None:
    cfg = compose_cfg(f"model={model_name}", f"likelihood={likelihood}", "latent_dim=3")
    torch.manual_seed(0)
    model = build_vae(cfg, [1, 28, 28])
    optimizer, enc = torch.optim.Adam(model.parameters(), lr=1e-3), model.encoder
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    loss, terms = model.training_loss((images, None))
    loss.backward()
    optimizer.step()
    assert math.isfinite(float(loss)) and terms.kl_layers.shape == (4, 2)
    assert torch.allclose(terms.kl_layers.sum(-1), terms.kl)
    for part in (enc.q_z2, enc.q_z1, model.decoder, model.prior.conditionals[0]):
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in part.parameters())
    assert model.sample(2).shape == (2, 1, 28, 28)


def _check_run(run: Path, summary: dict, data_root: Path, tmp_path: Path) -> None:  # type: ignore[type-arg]
    for stage in ("val", "test"):
        metrics = summary[stage]
        assert all(math.isfinite(v) for v in metrics.values())
        assert metrics["kl_z2"] + metrics["kl_z1"] == pytest.approx(metrics["kl"], abs=1e-3)
    model = vae_lab.load(run)  # the command's loader, as a notebook calls it
    images, labels = _test_split(data_root)
    result = evaluate(model, IndexBatches(images[:20], labels[:20], 10, shuffle=False), k=3)
    assert result.images == 20 and math.isfinite(result.iw_nll) and math.isfinite(result.elbo)
    assert list(result.kl_per_layer) == ["z2", "z1"]
    assert sum(result.kl_per_layer.values()) == pytest.approx(result.kl, abs=1e-4)
    assert sum(result.active_units_per_layer.values()) == result.active_units
    assert result.kl_per_dim is None  # a Monte Carlo KL does not split by dim
    out = tmp_path / "pictures" / "s.png"
    written = sample.run(_sample_cfg(run, data_root, out, "sample.n=4", "sample.nrow=2"))
    assert out in written and all(p.is_file() for p in written)
    assert out.with_name("s_traversals.png") in written


# one run in the fast tier (hvae with N(0, I)); the other models and priors train in the slow one
RUNS = [
    pytest.param(model, prior, marks=() if (model, prior) == ("hvae", "standard_normal") else slow)
    for model in ("hvae", "conv_hvae")
    for prior in sorted(PRIORS)
]


@pytest.mark.parametrize(("model_name", "prior"), RUNS)
def test_each_prior_trains_resumes_evaluates_and_samples(
    tiny_data: Path, tmp_path: Path, model_name: str, prior: str
) -> None:
    option = (f"model={model_name}", f"prior={prior}", *PRIORS[prior], *QUICK)
    run = tmp_path / "run"
    first = train(compose_tiny(tiny_data, run, *option, "trainer.max_epochs=1"))
    assert first["status"] == "completed" and (run / "checkpoints" / "last.ckpt").is_file()
    resumed = train(
        compose_tiny(tiny_data, run, *option, "trainer.max_epochs=2", f"ckpt_path={run}")
    )
    assert (resumed["epochs"], resumed["global_step"]) == (2, 4)
    _check_run(run, resumed, tiny_data, tmp_path)


@slow
@pytest.mark.parametrize(
    "option",
    [
        (
            "model=hvae",
            "objective=iwae",
            "objective.k=3",
            "prior=vampprior",
            "prior.pseudo_inputs=5",
        ),
        ("model=conv_hvae", "objective=iwae", "objective.k=3"),
        ("model=hvae", "kl_schedule=linear", "kl_schedule.warmup_epochs=3"),
        ("model=hvae", "kl_schedule=cyclical", "kl_schedule.cycle_epochs=1"),
    ],
    ids=lambda o: " ".join(o),
)
def test_the_objectives_and_kl_schedules_train_the_hierarchy(
    tiny_data: Path, tmp_path: Path, option: tuple[str, ...]
) -> None:
    run = tmp_path / "run"
    summary = train(compose_tiny(tiny_data, run, *option, *QUICK, "trainer.max_epochs=2"))
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert all(math.isfinite(v) for v in summary["test"].values())


@slow
def test_early_stopping_stops_a_hierarchy(tiny_data: Path, tmp_path: Path) -> None:
    early = (
        *QUICK,
        "model=hvae",
        "trainer.max_epochs=20",
        "eval.k=0",
        "callbacks.image_grids=null",
        "callbacks.latent_pictures=null",
        "callbacks.early_stopping.patience=2",
        "callbacks.early_stopping.min_delta=1e9",  # no epoch beats the first by 1e9 nats
    )
    assert train(compose_tiny(tiny_data, tmp_path / "run", *early))["epochs"] == 3


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (("objective.free_bits=0.2",), "does not go with the prior HierarchicalPrior"),
        (("conditioning=label",), "does not go with model.encoder HVAEEncoder"),
    ],
)
def test_what_a_hierarchy_cannot_take_is_refused_in_one_line(
    compose_cfg: ComposeFn, options: tuple[str, ...], says: str
) -> None:
    with pytest.raises(UserError, match=says) as refused:
        build_vae(compose_cfg("model=hvae", *options), [1, 28, 28])
    assert "\n" not in str(refused.value)


def test_a_single_latent_run_reports_its_one_layer(trained_run: Path, tiny_data: Path) -> None:
    import json

    metrics = json.loads((trained_run / "metrics.json").read_text())
    for stage in ("val", "test"):
        assert metrics[stage]["kl_z1"] == pytest.approx(metrics[stage]["kl"])
        assert "kl_z2" not in metrics[stage]
    images, labels = _test_split(tiny_data)
    result = evaluate(
        vae_lab.load(trained_run), IndexBatches(images[:20], labels[:20], 10, shuffle=False), k=2
    )
    assert result.kl_per_layer == {"z1": pytest.approx(result.kl)}
    assert result.active_units_per_layer == {"z1": result.active_units}

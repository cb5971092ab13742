"""The mixture priors against brute force: each component's density computed on its own
(torch's MultivariateNormal, float64), summed with a log-sum-exp over components; and the
VampPrior's components against the encoder run on each pseudo-input by itself."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal

from vae_lab.models.components.conditioning import LabelConditioning
from vae_lab.models.components.gaussian import diagonal_gaussian
from vae_lab.models.components.likelihoods import Bernoulli
from vae_lab.models.components.mlp import MLPDecoder, MLPEncoder
from vae_lab.models.components.mog import MixtureOfGaussiansPrior
from vae_lab.models.components.prior import StandardNormalPrior
from vae_lab.models.components.vampprior import VampPrior
from vae_lab.models.vae import VAE

SHAPE, LATENT = (1, 6, 5), 3


def brute_force_mixture(
    z: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """log (1/K) sum_k N(z | m_k, diag(v_k)), one component at a time, in float64."""
    per_component = [
        MultivariateNormal(m.double(), torch.diag(v.double())).log_prob(z.double())
        for m, v in zip(means, variances, strict=True)
    ]
    return torch.logsumexp(torch.stack(per_component, dim=-1), dim=-1) - math.log(len(means))


def vae_with(prior: torch.nn.Module, conditional: bool = False) -> VAE:
    torch.manual_seed(0)
    condition = {"condition_dim": 4} if conditional else {}
    return VAE(
        encoder=MLPEncoder(SHAPE, LATENT, hidden_sizes=(16,), **condition),
        decoder=MLPDecoder(SHAPE, LATENT, hidden_sizes=(16,), **condition),
        likelihood=Bernoulli(),
        prior=prior,
        optimizer=torch.optim.Adam,
        conditioning=LabelConditioning(4) if conditional else None,
        input_shape=SHAPE,
    )


def test_mog_log_density_is_the_log_sum_exp_over_its_components() -> None:
    torch.manual_seed(1)
    prior = MixtureOfGaussiansPrior(LATENT, components=7)
    with torch.no_grad():
        prior.log_vars.normal_(0.0, 0.7)
    z = torch.randn(5, 11, LATENT) * 2  # K samples of z for a batch, as the IW bound asks
    expected = brute_force_mixture(z, prior.means.detach(), prior.log_vars.detach().exp())
    torch.testing.assert_close(prior.log_prob(z).double(), expected, atol=2e-4, rtol=1e-5)


def test_a_mixture_far_from_every_component_stays_finite() -> None:
    prior = MixtureOfGaussiansPrior(LATENT, components=3)
    far = torch.full((2, LATENT), 300.0)  # every component density underflows
    log_p = prior.log_prob(far)
    expected = brute_force_mixture(far, prior.means.detach(), prior.log_vars.detach().exp())
    assert bool((expected < -1e5).all())  # far indeed: -134,832 nats
    # float32 keeps about 7 digits of -134,832 (measured: 0.013 off): 0.05 nats
    torch.testing.assert_close(log_p.double(), expected, rtol=0, atol=0.05)


def test_vampprior_components_are_the_encoders_posteriors_at_its_pseudo_inputs() -> None:
    model = vae_with(VampPrior(LATENT, pseudo_inputs=6))
    prior = model.prior
    assert isinstance(prior, VampPrior)
    with torch.no_grad():  # some pixels outside [0, 1]: the prior must use them clamped
        prior.pseudo_inputs.normal_(0.5, 0.8)
    means, log_vars = prior.components()
    for k, u in enumerate(prior.pseudo_inputs.detach()):
        q = model.encoder(u.clamp(0, 1)[None])  # the encoder on this pseudo-input alone
        torch.testing.assert_close(means[k], q.mean[0])
        torch.testing.assert_close(log_vars[k].exp(), q.variance[0])

    z = torch.randn(9, LATENT)
    expected = brute_force_mixture(z, means.detach(), log_vars.detach().exp())
    torch.testing.assert_close(prior.log_prob(z).double(), expected, atol=2e-4, rtol=1e-5)


def test_a_conditional_vampprior_gives_pseudo_input_k_the_label_k_mod_classes() -> None:
    model = vae_with(VampPrior(LATENT, pseudo_inputs=6), conditional=True)
    prior = model.prior
    assert isinstance(prior, VampPrior)
    means, _ = prior.components()
    for k, u in enumerate(prior.pseudo_inputs.detach()):
        one_hot = F.one_hot(torch.tensor([k % 4]), 4).float()
        torch.testing.assert_close(means[k], model.encoder(u.clamp(0, 1)[None], one_hot).mean[0])


def test_vampprior_pseudo_inputs_start_as_in_the_papers_code() -> None:
    torch.manual_seed(0)
    model = vae_with(VampPrior(LATENT, pseudo_inputs=500))
    u = model.prior.pseudo_inputs.detach()
    assert u.shape == (500, *SHAPE)
    # N(0.05, 0.01^2) per pixel (utils/load_data.py of jmtomczak/vae_vampprior)
    assert float(u.mean()) == pytest.approx(0.05, abs=1e-3)
    assert float(u.std()) == pytest.approx(0.01, abs=1e-3)
    assert "prior.pseudo_inputs" in model.state_dict()  # checkpointed and learned
    assert any(p is model.prior.pseudo_inputs for p in model.parameters())


def test_the_vampprior_is_trained_through_its_pseudo_inputs_and_the_encoder() -> None:
    """The gradient of log p(z) in one pseudo-input pixel and one encoder weight, against
    central differences in float64."""
    model = vae_with(VampPrior(LATENT, pseudo_inputs=4)).double()
    z = torch.randn(3, LATENT, dtype=torch.float64)
    model.prior.log_prob(z).sum().backward()
    pixels = model.prior.pseudo_inputs  # (4, *SHAPE), all inside (0, 1): the clamp passes
    for tensor in (pixels, model.encoder.net[0].weight):
        assert tensor.grad is not None  # the largest entry: not a dead ReLU unit's 0
        index = tuple(int(i) for i in torch.unravel_index(tensor.grad.abs().argmax(), tensor.shape))
        sides = []
        with torch.no_grad():
            centre = float(tensor[index])
            for shifted in (centre + 1e-6, centre - 1e-6):
                tensor[index] = shifted
                sides.append(float(model.prior.log_prob(z).sum()))
            tensor[index] = centre
        difference = (sides[0] - sides[1]) / 2e-6
        assert float(tensor.grad[index]) == pytest.approx(difference, rel=1e-5, abs=1e-8)
        assert difference != 0.0


def test_mixture_samples_pick_components_uniformly() -> None:
    prior = MixtureOfGaussiansPrior(1, components=2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-10.0], [10.0]]))
        prior.log_vars.fill_(math.log(0.25))
    z = prior.sample(20_000, torch.Generator().manual_seed(0)).detach()[:, 0]
    right = z > 0
    assert float(right.float().mean()) == pytest.approx(0.5, abs=0.015)
    assert float(z[right].mean()) == pytest.approx(10.0, abs=0.02)
    assert float(z[right].std()) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "make", [lambda: StandardNormalPrior(LATENT), lambda: VampPrior(LATENT, 5)]
)
def test_prior_samples_repeat_with_the_same_generator_seed(make) -> None:
    model = vae_with(make())
    draw = lambda seed: model.prior.sample(6, torch.Generator().manual_seed(seed))  # noqa: E731
    assert draw(3).shape == (6, LATENT)
    torch.testing.assert_close(draw(3), draw(3))
    assert not torch.allclose(draw(3), draw(4))


def test_without_a_closed_form_the_kl_is_a_one_sample_estimate() -> None:
    prior = MixtureOfGaussiansPrior(LATENT, components=3)
    q = diagonal_gaussian(torch.randn(4, LATENT), torch.randn(4, LATENT))
    z = q.sample()
    by_hand = q.log_prob(z) - brute_force_mixture(
        z, prior.means.detach(), prior.log_vars.detach().exp()
    )
    torch.testing.assert_close(prior.kl(q, z).double(), by_hand.double(), atol=2e-4, rtol=1e-5)
    assert prior.kl_per_dim(q) is None  # a mixture's KL does not split by dim


def test_the_vampprior_needs_an_encoder_function_and_no_model() -> None:
    """Attached to a bare encoder, with no VAE anywhere: its components are that encoder's
    posteriors at the clamped pseudo-inputs, pseudo-input k labelled k mod 3."""
    torch.manual_seed(0)
    encoder = MLPEncoder(SHAPE, LATENT, hidden_sizes=(16,), condition_dim=3)
    labels_seen = []

    def encode(x: torch.Tensor, labels: torch.Tensor | None) -> torch.distributions.Independent:
        assert labels is not None
        labels_seen.append(labels.tolist())
        return encoder(x, F.one_hot(labels, 3).float())

    prior = VampPrior(LATENT, pseudo_inputs=5)
    prior.attach(encode=encode, input_shape=SHAPE, num_classes=3)
    means, log_vars = prior.components()
    assert labels_seen == [[0, 1, 2, 0, 1]]
    u = prior.pseudo_inputs.detach().clamp(0, 1)
    q = encoder(u, F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float())
    torch.testing.assert_close(means, q.mean)
    torch.testing.assert_close(log_vars.exp(), q.variance)


def test_a_prior_written_for_the_old_attach_model_is_refused_in_one_line() -> None:
    with pytest.raises(TypeError, match=r"^OldPrior.attach\(model\) is now attach\(encode, "):

        class OldPrior(StandardNormalPrior):
            def attach(self, model: object) -> None:  # type: ignore[override]
                pass

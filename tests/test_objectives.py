"""Training objectives and KL schedules: IWAE against the ELBO and the closed-form evidence,
free bits and the schedules' weights against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_bounds import SIGMA, B, W, linear_gaussian_vae, log_evidence
from tests.test_priors import SHAPE, vae_with
from vae_lab.models.components.kl_schedules import ConstantKL, CyclicalKL, LinearWarmup
from vae_lab.models.components.mog import MixtureOfGaussiansPrior
from vae_lab.models.components.objectives import ELBO, IWAE, free_bits_kl
from vae_lab.models.components.prior import StandardNormalPrior
from vae_lab.models.components.vampprior import VampPrior

PRIORS = {
    "mog": lambda: MixtureOfGaussiansPrior(3, components=4),
    "vampprior": lambda: VampPrior(3, pseudo_inputs=5),
}


@pytest.mark.parametrize("beta", [1.0, 0.3])
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_iwae_with_one_sample_is_the_elbo_on_the_same_draw(prior: str, beta: float) -> None:
    # With a Monte Carlo KL, both losses are recon + beta (log q(z|x) - log p(z)) at one z.
    model = vae_with(PRIORS[prior]())
    x = torch.rand(6, *SHAPE).round()
    results = []
    for objective in (ELBO(), IWAE(k=1)):
        model.zero_grad()
        torch.manual_seed(7)  # the same eps for both
        loss = objective(model, x, None, beta).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (elbo_loss, elbo_grads), (iwae_loss, iwae_grads) = results
    torch.testing.assert_close(iwae_loss, elbo_loss)
    for a, b in zip(elbo_grads, iwae_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_the_iwae_objective_rises_toward_log_p_x_as_k_grows() -> None:
    torch.manual_seed(0)
    z = torch.randn(32, 2)
    x = (z @ W.T + B + SIGMA * torch.randn(32, 4)).reshape(32, 1, 2, 2)
    repeated = x.repeat(100, 1, 1, 1)  # many draws per image: the averages, not the noise
    model, exact = linear_gaussian_vae(shift=0.3), float(log_evidence(x).mean())
    torch.manual_seed(1)
    with torch.no_grad():
        bounds = {k: -float(IWAE(k)(model, repeated, None, 1.0).loss) for k in (1, 4, 32, 256)}
        elbo = -float(ELBO()(model, repeated, None, 1.0).loss)
    assert bounds[1] == pytest.approx(elbo, abs=0.05)  # L_1 is the ELBO (its KL sampled)
    assert bounds[1] < bounds[4] < bounds[32] < bounds[256] < exact + 0.01
    assert exact - bounds[256] < 0.1 * (exact - bounds[1])  # most of the gap closed


@pytest.mark.parametrize("k", [1, 3, 50])
def test_with_the_exact_posterior_the_iwae_loss_is_minus_log_p_x(k: int) -> None:
    """With q(z|x) the true posterior of the linear-Gaussian model every weight is p(x)
    itself, so the loss is -log p(x) in closed form (the marginal N(b, W W^T + sigma^2 I)),
    whatever k and whatever the draws."""
    torch.manual_seed(0)
    x = (torch.randn(16, 2) @ W.T + B + SIGMA * torch.randn(16, 4)).reshape(16, 1, 2, 2)
    with torch.no_grad():
        loss = IWAE(k)(linear_gaussian_vae(), x, None, 1.0).loss
    assert float(loss) == pytest.approx(-float(log_evidence(x).mean()), abs=1e-4)


def test_the_iwae_loss_is_minus_the_log_mean_weight() -> None:
    # log w_i from its three parts by hand, for k = 3 draws; beta tempers p(z) / q(z|x).
    model, x, beta = vae_with(StandardNormalPrior(3)), torch.rand(4, *SHAPE), 0.5
    torch.manual_seed(3)
    loss = IWAE(k=3)(model, x, None, beta).loss
    torch.manual_seed(3)
    q = model.encoder(x)
    z = q.rsample((3,))
    log_px_z = model.likelihood.log_prob(x, model.decoder(z))
    log_w = log_px_z + beta * (model.prior.log_prob(z) - q.log_prob(z))
    by_hand = -(torch.log(torch.exp(log_w.double()).mean(0))).mean()
    torch.testing.assert_close(loss.double(), by_hand, rtol=1e-5, atol=1e-4)


def test_free_bits_floor_each_dims_batch_average() -> None:
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 1.0, 0.2]])  # (B=2, D=3)
    # batch means 0.2, 1.5, 0.1; with a floor of 0.5: 0.5 + 1.5 + 0.5
    assert float(free_bits_kl(kl, 0.5)) == pytest.approx(2.5)
    assert float(free_bits_kl(kl, 0.0)) == pytest.approx(1.8)  # no floor: the plain sum
    grad = torch.zeros_like(kl, requires_grad=True)
    free_bits_kl(kl + grad, 0.5).backward()
    assert grad.grad is not None
    assert grad.grad.tolist() == [[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]  # only the dim above it


def test_the_elbo_with_free_bits_floors_the_kl_and_not_the_logged_terms() -> None:
    model, x = vae_with(StandardNormalPrior(3)), torch.rand(5, *SHAPE)
    torch.manual_seed(0)
    plain = ELBO()(model, x, None, 2.0)
    torch.manual_seed(0)
    floored = ELBO(free_bits=10.0)(model, x, None, 2.0)  # above every dim's KL here
    torch.testing.assert_close(floored.terms.elbo, plain.terms.elbo)
    recon = float(plain.terms.recon.mean().detach())
    assert float(floored.loss.detach()) == pytest.approx(recon + 2.0 * 3 * 10.0)


def test_constant_schedule() -> None:
    schedule = ConstantKL(beta=4.0)
    assert [schedule.weight(e) for e in (0, 0.5, 99)] == [4.0, 4.0, 4.0]
    assert not schedule.warming_up(0)


def test_linear_warmup_is_the_vampprior_recipes() -> None:
    schedule = LinearWarmup(beta=1.0, warmup_epochs=100)
    # beta = epoch / 100 with 1-based epochs, capped at 1; constant within an epoch
    weights = [schedule.weight(e) for e in (0, 0.99, 1, 49, 98, 99, 150)]
    assert weights == pytest.approx([0.01, 0.01, 0.02, 0.5, 0.99, 1.0, 1.0])
    assert schedule.warming_up(98) and not schedule.warming_up(99)
    assert LinearWarmup(beta=2.0, warmup_epochs=4).weight(1) == pytest.approx(1.0)


def test_cyclical_schedule_of_fu_et_al() -> None:
    schedule = CyclicalKL(beta=2.0, cycle_epochs=10, ratio=0.5)
    # tau = (epoch / 10) mod 1; beta_t = 2 * min(1, tau / 0.5)
    epochs = [0, 1.25, 2.5, 5, 9.9, 10, 12.5, 25]
    assert [schedule.weight(e) for e in epochs] == pytest.approx(
        [0.0, 0.5, 1.0, 2.0, 2.0, 0.0, 1.0, 2.0]
    )
    # The first ramp ends at 5.0: epoch 4 trains at 1.6 to 2.0 (exclusive), epoch 5 at 2.
    assert schedule.warming_up(4) and not schedule.warming_up(5)
    # Ending mid-epoch (at 4.5): epoch 4 is still partly ramp, 5 the first at full beta.
    short = CyclicalKL(cycle_epochs=9, ratio=0.5)
    assert short.weight(4.4) < 1.0 and short.weight(5.0) == pytest.approx(1.0)
    assert short.warming_up(4) and not short.warming_up(5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LinearWarmup(warmup_epochs=0), "warmup_epochs must be a positive integer"),
        (lambda: CyclicalKL(ratio=0), "ratio must be in"),
        (lambda: ELBO(free_bits=-1), "objective.free_bits must be >= 0"),
        (lambda: ELBO(free_bits=math.inf), "objective.free_bits must be >= 0 and finite"),
        (lambda: IWAE(free_bits=0.5), "the IWAE objective has no KL term for free bits"),
        (lambda: IWAE(k=0), "objective.k must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()

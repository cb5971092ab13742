"""The model's maths without Lightning: `VAECore` alone computes what the LightningModule
`VAE` computes, under the state-dict names that checkpoints hold, and takes its device and
dtype from its own tensors."""

from __future__ import annotations

import lightning as L
import torch

from tests.test_priors import LATENT, SHAPE, vae_with
from vae_lab.models.components.likelihoods import Bernoulli
from vae_lab.models.components.mlp import MLPDecoder, MLPEncoder
from vae_lab.models.components.vampprior import VampPrior
from vae_lab.models.core import VAECore


def core_with(prior: torch.nn.Module) -> VAECore:
    torch.manual_seed(0)  # as vae_with: the same draws, so the same weights
    return VAECore(
        encoder=MLPEncoder(SHAPE, LATENT, hidden_sizes=(16,)),
        decoder=MLPDecoder(SHAPE, LATENT, hidden_sizes=(16,)),
        likelihood=Bernoulli(),
        prior=prior,
        input_shape=SHAPE,
    )


def test_the_core_alone_gives_the_lightning_modules_numbers() -> None:
    core, vae = core_with(VampPrior(LATENT, 4)), vae_with(VampPrior(LATENT, 4))
    assert not isinstance(core, L.LightningModule) and isinstance(vae, VAECore)
    assert list(core.state_dict()) == list(vae.state_dict())
    for name, tensor in vae.state_dict().items():
        torch.testing.assert_close(core.state_dict()[name], tensor)

    batch = (torch.randint(0, 256, (5, *SHAPE), dtype=torch.uint8), None)
    for run in (
        lambda m: m.elbo_terms(batch).elbo,
        lambda m: m.iw_log_likelihood(batch, k=7),
        lambda m: m.reconstruct(batch),
        lambda m: m.sample(3, generator=torch.Generator().manual_seed(1)),
    ):
        torch.manual_seed(2)
        expected = run(vae)
        torch.manual_seed(2)
        torch.testing.assert_close(run(core), expected)


def test_the_core_puts_a_batch_in_its_own_dtype() -> None:
    core = core_with(VampPrior(LATENT, 4)).double()
    images = torch.randint(0, 256, (2, *SHAPE), dtype=torch.uint8)
    assert core.elbo_terms((images, None)).elbo.dtype == torch.float64
    assert core.decode(torch.zeros(2, LATENT)).dtype == torch.float64
    assert "_device_anchor" not in core.state_dict()  # not a weight: checkpoints lack it

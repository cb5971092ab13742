"""Build a VAE from a composed config and what the data says (image shape, class count)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.utils import instantiate
from omegaconf import DictConfig

from vae_lab.cli.errors import UserError
from vae_lab.models.compat import check_model_config
from vae_lab.models.components.prior import Prior
from vae_lab.models.vae import VAE


def model_prior(cfg: DictConfig) -> Prior:
    """The configured prior (`cfg.prior`), or, for a model whose config has `latents` (a
    `_partial_` factory: a stack of latent layers), what that makes of it as its top layer:
    p(z) over the whole stack (`hierarchical_prior.HierarchicalPrior`)."""
    prior: Prior = instantiate(cfg.prior)
    latents = cfg.model.get("latents")
    return prior if latents is None else instantiate(latents, _convert_="all")(top=prior)


def build_vae(cfg: DictConfig, input_shape: Sequence[int], num_classes: int = 10) -> VAE:
    """Instantiate every group of `config.schemas.MODEL_GROUPS`, the optimizer and the
    scheduler from `cfg`, and hand the parts to the module `cfg.module` names.

    What comes from the data rather than the config is handed in here: the encoder gets
    `input_shape` (so no config hard-codes 28x28), the decoder `output_shape`, the image's
    shape with its channels times the likelihood's `params_per_pixel` (so a likelihood
    with more numbers per pixel needs no other network), and both, when the conditioning
    gives them a condition, its size `condition_dim`; the conditioning gets `num_classes`.
    The prior is `model_prior`'s.
    """
    check_model_config(cfg)
    shape = list(input_shape)
    conditioning = instantiate(cfg.conditioning, num_classes=num_classes)
    sizes = {"condition_dim": conditioning.dim} if conditioning.conditions else {}
    encoder = instantiate(cfg.model.encoder, input_shape=shape, **sizes, _convert_="all")
    likelihood = instantiate(cfg.likelihood)
    output_shape = [shape[0] * likelihood.params_per_pixel, *shape[1:]]
    module = instantiate(
        cfg.module,
        encoder=encoder,
        decoder=instantiate(cfg.model.decoder, output_shape=output_shape, **sizes, _convert_="all"),
        likelihood=likelihood,
        prior=model_prior(cfg),
        objective=instantiate(cfg.objective),
        kl_schedule=instantiate(cfg.kl_schedule),
        conditioning=conditioning,
        optimizer=instantiate(cfg.optimizer, _convert_="all"),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        input_shape=shape,
        iw_samples=cfg.eval.k,
        iw_decode_batch=cfg.eval.decode_batch,
    )
    if not isinstance(module, VAE):
        raise UserError(
            f"module._target_ must name vae_lab.models.vae.VAE or a subclass of it, got "
            f"{type(module).__name__}"
        )
    return module

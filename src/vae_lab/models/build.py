"""Build a VAE from a composed config and the data's input shape."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.utils import instantiate
from omegaconf import DictConfig

from vae_lab.models.vae import VAE


def build_vae(cfg: DictConfig, input_shape: Sequence[int]) -> VAE:
    """Instantiate encoder, decoder, likelihood, prior, optimizer and scheduler from `cfg`.

    Encoder and decoder get `input_shape` from the data, so no config hard-codes 28x28.
    """
    shape = list(input_shape)
    parts = cfg.model
    return VAE(
        encoder=instantiate(parts.encoder, input_shape=shape, _convert_="all"),
        decoder=instantiate(parts.decoder, input_shape=shape, _convert_="all"),
        likelihood=instantiate(cfg.likelihood),
        prior=instantiate(parts.prior),
        optimizer=instantiate(cfg.optimizer, _convert_="all"),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        beta=cfg.beta,
        iw_samples=cfg.eval.k,
        iw_decode_batch=cfg.eval.decode_batch,
    )

"""Every option of every config group composes and builds, and reaches what it configures.
(Typos and bad values, for every command: test_errors.py.)"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import OmegaConf

from tests.conftest import ComposeFn
from vae_lab.callbacks.disk_faults import DiskFaultGuard
from vae_lab.callbacks.divergence import DivergenceGuard
from vae_lab.callbacks.early_stopping import WarmupEarlyStopping
from vae_lab.callbacks.images import ImageGrids
from vae_lab.callbacks.latents import EmbeddingProjector, LatentPictures
from vae_lab.callbacks.rng_state import RNGState
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.config.checks import validate
from vae_lab.config.schemas import TrainerConfig
from vae_lab.models.build import build_vae
from vae_lab.models.components.mlp import MLPDecoder, MLPEncoder
from vae_lab.run import allowed_targets
from vae_lab.train import build_callbacks, build_loggers


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


BUILT_GROUPS = [
    *("module", "model", "likelihood", "prior", "objective", "kl_schedule", "conditioning"),
    *("optimizer", "scheduler", "data", "experiment"),
]
CASES = [(g, o) for g in BUILT_GROUPS for o in _options(g)]


def test_every_group_has_options() -> None:
    for group in [*BUILT_GROUPS, "trainer", "logger", "callbacks", "debug", "hydra", "paths"]:
        assert _options(group), group


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_builds(compose_cfg: ComposeFn, group: str, option: str) -> None:
    cfg = compose_cfg(f"{group}={option}")
    validate(cfg)
    # a checkpoint of a run made from this option must be readable by evaluate and sample
    allowed_targets.check(OmegaConf.to_container(cfg, resolve=True))
    model = build_vae(cfg, input_shape=(1, 28, 28))
    # the optimizer trains every parameter, the prior's and likelihood's included
    optimizers = model.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters()}
    assert isinstance(instantiate(cfg.data), L.LightningDataModule)


@pytest.mark.parametrize("option", _options("trainer"))
def test_trainer_options_compose(compose_cfg: ComposeFn, option: str) -> None:
    cfg = compose_cfg(f"trainer={option}")
    allowed_targets.check(OmegaConf.to_container(cfg, resolve=True))
    if option != "gpu":  # building a GPU trainer needs a GPU; the CLI test covers the refusal
        assert isinstance(instantiate(cfg.trainer, logger=False), L.Trainer)


DEFAULT_CALLBACKS = {
    ModelCheckpoint, ImageGrids, TQDMProgressBar, ModelSummary, LatentPictures, EmbeddingProjector,
    WarmupEarlyStopping,  # off (patience null) unless configured, but always present
}  # fmt: skip
# not optional: a run must stop on NaN or a log file it cannot write, and resume exactly
ALWAYS = {DivergenceGuard, DiskFaultGuard, RNGState}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], DEFAULT_CALLBACKS | ALWAYS),
        (["callbacks=none"], ALWAYS),
        (["callbacks.image_grids=null"], DEFAULT_CALLBACKS - {ImageGrids} | ALWAYS),
        (["~callbacks.latent_pictures"], DEFAULT_CALLBACKS - {LatentPictures} | ALWAYS),
        (["trainer.enable_progress_bar=false"], DEFAULT_CALLBACKS - {TQDMProgressBar} | ALWAYS),
    ],
    ids=["defaults", "callbacks=none", "image_grids=null", "~latent_pictures", "no progress bar"],
)
def test_the_run_gets_the_callbacks_its_config_names(
    compose_cfg: ComposeFn, tmp_path: Path, overrides: list[str], expected: set[type]
) -> None:
    # the tiny overrides turn the progress bar off: compose without them
    cfg = compose_cfg(f"paths.output_dir={tmp_path}", *overrides, tiny=False)
    allowed_targets.check(OmegaConf.to_container(cfg, resolve=True))  # see test_option_...
    callbacks = build_callbacks(cfg)
    assert {type(c) for c in callbacks} == expected
    # one of each, but ModelCheckpoint twice where checkpoints are on: best, and last
    doubled = 1 if ModelCheckpoint in expected else 0
    assert len(callbacks) == len(expected) + doubled
    names = sorted(getattr(c, "filename", "") or "" for c in callbacks)
    assert doubled == 0 or {"best-epoch{epoch:03d}", "last"} <= set(names)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], [TensorBoardLogger]),
        (["logger=csv"], [CSVLogger]),
        (["logger.tensorboard=null"], []),
    ],
    ids=["defaults", "logger=csv", "logger.tensorboard=null"],
)
def test_the_run_gets_the_loggers_its_config_names(
    compose_cfg: ComposeFn, overrides: list[str], expected: list[type]
) -> None:
    cfg = compose_cfg(*overrides)
    allowed_targets.check(OmegaConf.to_container(cfg, resolve=True))  # see test_option_...
    assert [type(logger) for logger in build_loggers(cfg)] == expected


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("fdr", {"fast_dev_run": 1}),  # Lightning's count for `true`
        ("limit", {"max_epochs": 3, "limit_train_batches": 10, "limit_val_batches": 2}),
        ("overfit", {"max_epochs": 100, "overfit_batches": 1}),
    ],
)
def test_debug_options_reach_the_trainer(
    compose_cfg: ComposeFn, tmp_path: Path, option: str, expected: dict[str, int]
) -> None:
    cfg = compose_cfg(f"debug={option}", f"paths.output_dir={tmp_path}", tiny=False)
    trainer = instantiate(cfg.trainer, accelerator="cpu", logger=False)
    assert {key: getattr(trainer, key) for key in expected} == expected


def test_article_experiment_trains_an_mlp_on_squared_error_with_adam(
    compose_cfg: ComposeFn,
) -> None:
    model = build_vae(compose_cfg("experiment=article"), (1, 28, 28))
    assert isinstance(model.encoder, MLPEncoder) and isinstance(model.decoder, MLPDecoder)
    assert isinstance(model.configure_optimizers(), torch.optim.Adam)
    # sigma = 1: -log p(x|z) is half the squared error plus 784 / 2 * log(2 pi), by hand
    x, mean = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    squared = ((x - mean) ** 2).flatten(1).sum(1)
    expected = 0.5 * squared + 784 / 2 * math.log(2 * math.pi)
    torch.testing.assert_close(-model.likelihood.log_prob(x, mean), expected)


def test_latent_dim_reaches_every_part(compose_cfg: ComposeFn) -> None:
    model = build_vae(compose_cfg("model=conv", "latent_dim=7"), (1, 28, 28))
    x = torch.rand(5, 1, 28, 28)
    terms = model.elbo_terms((x, None))  # encoder -> z (7 dims) -> decoder, prior over 7 dims
    assert terms.kl.shape == (5,)
    assert model.encode((x, None)).mean.shape == (5, 7)
    assert model.decode(torch.zeros(5, 7)).shape == (5, 1, 28, 28)
    assert model.prior.log_prob(torch.zeros(1, 7)).item() == pytest.approx(
        -7 / 2 * math.log(2 * math.pi)
    )


def test_trainer_schema_is_lightnings_signature() -> None:
    lightning_args = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    schema_args = set(TrainerConfig.__dataclass_fields__) - {"_target_"}
    assert schema_args == lightning_args


def test_any_trainer_option_can_be_set(compose_cfg: ComposeFn) -> None:
    cfg = compose_cfg(
        "trainer.max_epochs=1", "trainer.limit_train_batches=20", "trainer.gradient_clip_val=1.5"
    )
    trainer = instantiate(cfg.trainer, logger=False)
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.gradient_clip_val) == (
        1,
        20,
        1.5,
    )

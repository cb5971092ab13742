"""Every option of every config group composes and builds; typos and bad values stop early."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf.errors import ConfigKeyError, ValidationError

from tests.conftest import ComposeFn
from vae_lab.config import TrainerConfig, validate
from vae_lab.errors import UserError
from vae_lab.models.build import build_vae
from vae_lab.models.vae import VAE
from vae_lab.train import CONFIG_DIR


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
    model = build_vae(cfg, input_shape=(1, 28, 28))
    assert isinstance(model, VAE)
    optimizers = model.configure_optimizers()
    assert optimizers is not None
    assert isinstance(instantiate(cfg.data), L.LightningDataModule)


@pytest.mark.parametrize("option", _options("trainer"))
def test_trainer_options_compose(compose_cfg: ComposeFn, option: str) -> None:
    cfg = compose_cfg(f"trainer={option}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if option != "gpu":  # building a GPU trainer needs a GPU; the CLI test covers the refusal
        assert isinstance(instantiate(cfg.trainer, logger=False), L.Trainer)


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_options_build(compose_cfg: ComposeFn, group: str) -> None:
    for option in _options(group):
        cfg = compose_cfg(f"{group}={option}")
        for node in (cfg[group] or {}).values():
            assert instantiate(node) is not None


@pytest.mark.parametrize("option", _options("debug"))
def test_debug_options_compose(compose_cfg: ComposeFn, option: str) -> None:
    cfg = compose_cfg(f"debug={option}", tiny=False)
    expected = {"fdr": "fast_dev_run", "limit": "limit_train_batches", "overfit": "overfit_batches"}
    assert cfg.trainer[expected[option]]


def test_article_experiment_is_the_articles_setting(compose_cfg: ComposeFn) -> None:
    cfg = compose_cfg("experiment=article")
    assert cfg.model.encoder._target_.endswith("MLPEncoder")
    assert cfg.likelihood._target_.endswith("likelihoods.Gaussian")
    assert cfg.optimizer._target_ == "torch.optim.Adam"


def test_latent_dim_reaches_every_part(compose_cfg: ComposeFn) -> None:
    cfg = compose_cfg("model=conv", "latent_dim=7")
    assert cfg.model.encoder.latent_dim == cfg.model.decoder.latent_dim == cfg.prior.latent_dim == 7


def test_trainer_schema_is_lightnings_signature() -> None:
    lightning_args = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    schema_args = set(TrainerConfig.__dataclass_fields__) - {"_target_"}
    assert schema_args == lightning_args


def test_any_trainer_option_can_be_set(compose_cfg: ComposeFn) -> None:
    cfg = compose_cfg(
        "trainer.max_epochs=1", "trainer.limit_train_batches=20", "trainer.gradient_clip_val=1.5"
    )
    assert (
        cfg.trainer.max_epochs,
        cfg.trainer.limit_train_batches,
        cfg.trainer.gradient_clip_val,
    ) == (1, 20, 1.5)


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_epoch=1",
        "data.batchsize=3",
        "latent_dim=abc",
        "data.download=maybe",
        "no_such_key=1",
    ],
)
def test_typos_and_wrong_types_fail_at_composition(compose_cfg: ComposeFn, override: str) -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        compose_cfg(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("latent_dim=0", "latent_dim must be a positive integer"),
        ("optimizer.lr=-0.1", "optimizer.lr must be a positive number"),
        ("optimizer.lr=0", "optimizer.lr must be a positive number"),
        ("data.batch_size=0", "data.batch_size must be a positive number"),
        ("data.val_size=0", "data.val_size must be at least 1"),
        ("data.binarize=static", "data.binarize must be one of"),
        ("beta=-1", "beta must be >= 0"),
        ("trainer.max_epochs=0", "trainer.max_epochs must be a positive integer"),
    ],
)
def test_bad_values_are_refused(compose_cfg: ComposeFn, override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate(compose_cfg(override))

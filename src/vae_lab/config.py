"""Typed schemas for the composed config, and the range checks types cannot express.

`MODEL_GROUPS` lists the config groups whose choices make up a model, once: the schema
below gives each its key, the builder (`vae_lab.models.build`) instantiates each, a resume
refuses a change in any (`vae_lab.run.resume`), and the checkpoint loader checks what each
names (`vae_lab.run.checkpoints`). A new group is one entry here and one directory of YAML.

The schemas are registered in Hydra's ConfigStore as `train_schema`; `configs/train.yaml`
lists it first in its defaults, so every YAML file is merged onto typed nodes: an unknown
key (`trainer.max_epoch=1`) or a wrong type (`latent_dim=abc`) fails at composition, before
anything is imported or read. `validate` then checks the values (positive sizes, a learning
rate above zero, ...), still before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional, cast

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_lab.cli.errors import UserError

# The groups that make a model: the LightningModule, then its parts.
MODEL_GROUPS = (
    "module", "model", "likelihood", "prior", "objective", "kl_schedule", "conditioning",
)  # fmt: skip
BINARIZE_CHOICES = ("none", "dynamic")
VAL_SPLIT_CHOICES = ("random", "last")
MAX_SEED = 2**32 - 1  # numpy's limit, which Lightning's seed_everything enforces


@dataclass
class DataConfig:
    _target_: str = "vae_lab.data.fashion_mnist.FashionMNISTDataModule"
    root: Optional[str] = None  # noqa: UP045
    cache_dir: str = "data"
    download: bool = False
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_size: int = 5000
    val_split: str = "random"
    split_seed: int = 0
    shuffle_seed: int = 0
    binarize: str = "none"
    binarize_seed: int = 0
    device_resident: bool = True


@dataclass
class ModelConfig:
    """The `model` group: the encoder/decoder pair."""

    encoder: Any = None
    decoder: Any = None


@dataclass
class TrainerConfig:
    """Every argument of `lightning.pytorch.Trainer` (checked against its signature in the
    tests), so any of them can be set from the command line and a misspelt one fails."""

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: Any = "auto"
    strategy: Any = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: Any = None
    logger: Any = None
    callbacks: Any = None
    fast_dev_run: Any = False
    max_epochs: Optional[int] = None  # noqa: UP045
    min_epochs: Optional[int] = None  # noqa: UP045
    max_steps: int = -1
    min_steps: Optional[int] = None  # noqa: UP045
    max_time: Any = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    limit_predict_batches: Any = None
    overfit_batches: Any = 0.0
    val_check_interval: Any = None
    check_val_every_n_epoch: Optional[int] = 1  # noqa: UP045
    num_sanity_val_steps: Optional[int] = None  # noqa: UP045
    log_every_n_steps: Optional[int] = None  # noqa: UP045
    enable_checkpointing: Optional[bool] = None  # noqa: UP045
    enable_progress_bar: Optional[bool] = None  # noqa: UP045
    enable_model_summary: Optional[bool] = None  # noqa: UP045
    accumulate_grad_batches: int = 1
    gradient_clip_val: Any = None
    gradient_clip_algorithm: Optional[str] = None  # noqa: UP045
    deterministic: Any = None
    benchmark: Optional[bool] = None  # noqa: UP045
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    profiler: Any = None
    detect_anomaly: bool = False
    barebones: bool = False
    plugins: Any = None
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    default_root_dir: Optional[str] = None  # noqa: UP045
    enable_autolog_hparams: bool = True
    model_registry: Optional[str] = None  # noqa: UP045


@dataclass
class PathsConfig:
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class RuntimeConfig:
    """Process-wide torch settings, applied before anything is built."""

    flush_denormal: bool = True
    num_threads: Optional[int] = None  # noqa: UP045
    float32_matmul_precision: Optional[str] = None  # noqa: UP045
    compile: bool = False
    channels_last: bool = False
    wait_policy: Optional[str] = None  # noqa: UP045


@dataclass
class EvalConfig:
    """The importance-weighted bound the test stage logs (`vae_lab.evaluate` reads it too)."""

    k: int = 20
    decode_batch: Optional[int] = None  # noqa: UP045


@dataclass
class RunConfig:
    """Everything of `configs/train.yaml` but the model's groups."""

    latent_dim: int = 16
    seed: int = 42
    beta: float = 1.0
    ckpt_path: Optional[str] = None  # noqa: UP045
    optimized_metric: str = "val/elbo"
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: Any = None
    scheduler: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None
    callbacks: Any = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# The schemas of model groups with a fixed set of keys; the others take any keys, which
# the class they name checks when it is built.
_GROUP_SCHEMAS: dict[str, type] = {"model": ModelConfig}
TrainConfig = cast(
    type[RunConfig],
    make_dataclass(
        "TrainConfig",
        [
            (g, _GROUP_SCHEMAS[g], field(default_factory=_GROUP_SCHEMAS[g]))
            if g in _GROUP_SCHEMAS
            else (g, Any, field(default=None))
            for g in MODEL_GROUPS
        ],
        bases=(RunConfig,),
    ),
)


def register_schemas() -> None:
    """`train_schema`, and those of the commands that read a checkpoint (evaluate, sample)."""
    from vae_lab.cli.checkpoint_job import EvaluateConfig, SampleConfig

    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="sample_schema", node=SampleConfig)


def _positive(value: Any, name: str, example: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < math.inf  # NaN fails this too
    ):
        raise UserError(f"{name} must be a positive number, got {value!r}; for example {example}")


def check_eval(eval_cfg: DictConfig, min_k: int = 0) -> None:
    """`eval.k` (samples of the importance-weighted bound) and its memory cap."""
    k = eval_cfg.k
    if isinstance(k, bool) or not isinstance(k, int) or k < min_k:
        lowest = "a positive integer" if min_k > 0 else "an integer >= 0 (0 turns it off)"
        raise UserError(f"eval.k must be {lowest}, got {k!r}; for example eval.k=5000")
    decode_batch = eval_cfg.decode_batch
    if decode_batch is not None and (isinstance(decode_batch, bool) or not decode_batch > 0):
        raise UserError(
            f"eval.decode_batch must be a positive integer or null (chosen for the device), "
            f"got {decode_batch!r}; for example eval.decode_batch=4096"
        )


def _no_unread_keys(cfg: DictConfig) -> None:
    """`+key=value` adds any key; where nothing would read it, the user's intent would be
    silently lost (`+lr=0.1` sets no learning rate), so it is refused."""
    for node, schema, prefix in (
        (cfg, TrainConfig, ""),
        (cfg.model, ModelConfig, "model."),
        (cfg.runtime, RuntimeConfig, "runtime."),
        (cfg.paths, PathsConfig, "paths."),
    ):
        known = {f.name for f in fields(schema)} | {"hydra"}
        unknown = [str(k) for k in node if k not in known]
        if unknown:
            raise UserError(
                f"unknown key {prefix}{unknown[0]}: nothing reads it, so it would have no "
                f"effect; the keys of {prefix.rstrip('.') or 'the top level'} are: "
                f"{', '.join(sorted(known - {'hydra'}))}"
            )


def validate(cfg: DictConfig) -> None:
    """Check values that the types allow but the run cannot use; raise a UserError."""
    try:  # an interpolation that does not resolve (`latent_dim='${nope}'`) fails here
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        where = getattr(e, "full_key", None) or "the config"
        raise UserError(f"{where} cannot be resolved: {str(e).strip().splitlines()[0]}") from e
    _no_unread_keys(cfg)
    from vae_lab.models.compat import check_model_config  # imports the parts' classes

    check_model_config(cfg)
    if cfg.latent_dim < 1:
        raise UserError(
            f"latent_dim must be a positive integer, got {cfg.latent_dim}; "
            "for example latent_dim=16"
        )
    if not 0 <= cfg.beta < math.inf:
        raise UserError(
            f"beta must be >= 0 and finite (it weights the KL term), got {cfg.beta}; "
            "for example beta=1.0"
        )
    if not 0 <= cfg.seed <= MAX_SEED:  # Lightning would swap it for a random seed, and warn
        raise UserError(
            f"seed must be between 0 and {MAX_SEED}, got {cfg.seed}; for example seed=42"
        )
    optimizer = cfg.get("optimizer")
    if optimizer is not None and "lr" in optimizer:
        _positive(optimizer.lr, "optimizer.lr", "optimizer.lr=1e-3")
    data = cfg.data
    _positive(data.batch_size, "data.batch_size", "data.batch_size=128")
    _positive(data.eval_batch_size, "data.eval_batch_size", "data.eval_batch_size=1000")
    if data.val_size < 1:
        raise UserError(
            f"data.val_size must be at least 1, got {data.val_size}; for example data.val_size=5000"
        )
    if data.val_split not in VAL_SPLIT_CHOICES:
        raise UserError(
            f"data.val_split must be one of {', '.join(VAL_SPLIT_CHOICES)}, got {data.val_split!r}"
        )
    if data.binarize not in BINARIZE_CHOICES:
        raise UserError(
            f"data.binarize must be one of {', '.join(BINARIZE_CHOICES)}, got {data.binarize!r}"
        )
    check_eval(cfg.eval)
    check_runtime(cfg.runtime)
    _check_trainer(cfg.trainer)


def check_runtime(runtime: DictConfig) -> None:
    """`runtime.*`, the process-wide settings (train and the classifier share them)."""
    threads = runtime.num_threads
    if threads is not None and threads < 1:
        raise UserError(f"runtime.num_threads must be a positive integer or null, got {threads}")
    if runtime.wait_policy not in (None, "passive", "active"):
        raise UserError(
            f"runtime.wait_policy must be passive, active or null, got {runtime.wait_policy!r}"
        )
    precision = runtime.float32_matmul_precision
    if precision not in (None, "highest", "high", "medium"):
        raise UserError(
            f"runtime.float32_matmul_precision must be highest, high or medium, got {precision!r}"
        )


def _check_trainer(trainer: DictConfig) -> None:
    max_epochs = trainer.max_epochs
    if (max_epochs is not None and max_epochs < -1) or max_epochs == 0:
        raise UserError(
            f"trainer.max_epochs must be a positive integer (or -1 for no limit), "
            f"got {max_epochs}; for example trainer.max_epochs=10"
        )
    # Lightning ignores any other value without a word.
    if trainer.deterministic not in (None, True, False, "warn"):
        raise UserError(
            f"trainer.deterministic must be true, false or warn, got {trainer.deterministic!r}"
        )
    clip = trainer.gradient_clip_val
    if clip is not None and (
        isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 <= clip < math.inf
    ):
        raise UserError(
            f"trainer.gradient_clip_val must be a number >= 0 (0: no clipping), got {clip!r}; "
            "for example trainer.gradient_clip_val=1.0"
        )

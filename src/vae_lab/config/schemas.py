"""The typed schemas of every command's config, and the constants they are built from.

Registered in Hydra's ConfigStore (`vae_lab.config.store`): `configs/train.yaml` lists
`train_schema` first in its defaults, `configs/evaluate.yaml` and `configs/sample.yaml`
`evaluate_schema` and `sample_schema`, so every YAML file is merged onto typed nodes: an
unknown key (`trainer.max_epoch=1`, `eval.kk=3`) or a wrong type (`latent_dim=abc`) fails at
composition, before anything is imported or read. The checks of values that types cannot
express (positive sizes, a learning rate above zero, ...) are `vae_lab.config.checks`.

`MODEL_GROUPS` lists the config groups whose choices make up a model, once: the schema
below gives each its key, the builder (`vae_lab.models.build`) instantiates each, the
module takes the parts they build (`MODEL_PARTS`), a resume refuses a change in any
(`vae_lab.run.resume`), and the checkpoint loader checks what each names
(`vae_lab.run.checkpoints`). A new group is one entry here and one directory of YAML.

This module imports nothing else of vae_lab: everything may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Optional, cast

__all__ = [
    "BINARIZE_CHOICES", "MAX_SEED", "MODEL_GROUPS", "MODEL_PARTS", "NETWORKS",
    "RENAMED_KEYS", "SPLITS", "VAL_SPLIT_CHOICES", "CheckpointDataConfig",
    "CheckpointJobConfig", "DataConfig", "EvalConfig", "EvaluateConfig", "EvaluateOptions",
    "ModelConfig", "PathsConfig", "RunConfig", "RuntimeConfig", "SampleConfig",
    "SampleOptions", "TrainConfig", "TrainerConfig",
]  # fmt: skip

# The groups that make a model: the LightningModule, then its parts.
MODEL_GROUPS = (
    "module", "model", "likelihood", "prior", "objective", "kl_schedule", "conditioning",
)  # fmt: skip
NETWORKS = ("encoder", "decoder")  # the two parts of the `model` group
# What the model groups build and hand to the module, by its constructor's argument names:
# each group's part under the group's name, the `model` group's two networks under theirs.
MODEL_PARTS = tuple(
    part
    for group in MODEL_GROUPS
    if group != "module"
    for part in (NETWORKS if group == "model" else (group,))
)
BINARIZE_CHOICES = ("none", "dynamic")
VAL_SPLIT_CHOICES = ("random", "last")
SPLITS = ("train", "val", "test")  # what evaluate's eval.split may name
MAX_SEED = 2**32 - 1  # numpy's limit, which Lightning's seed_everything enforces
# Keys that moved: old dotted key -> today's. The old one, given on the command line or in
# a config file, is refused with one line naming the new; a checkpoint's saved config is
# read under the new (`vae_lab.run.moved`).
RENAMED_KEYS = {"kl_schedule.free_bits": "objective.free_bits"}


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
    """The `model` group: the encoder/decoder pair (`NETWORKS`), and for a model with a
    stack of latent layers, `latents`: a `_partial_` factory that takes the configured
    prior as the top layer's and gives p(z) over the stack (null: a single latent layer,
    whose prior is the configured one)."""

    encoder: Any = None
    decoder: Any = None
    latents: Any = None


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


# --- evaluate and sample: the two commands that read a trained checkpoint ------------------


@dataclass
class CheckpointDataConfig:
    """Where the IDX files are, when not where the training run found them."""

    root: Optional[str] = None  # noqa: UP045
    cache_dir: Optional[str] = None  # noqa: UP045


@dataclass
class EvaluateOptions:
    k: int = 1000
    split: str = "test"
    limit: Optional[int] = None  # noqa: UP045
    batch_size: int = 500
    decode_batch: Optional[int] = None  # noqa: UP045
    fid: bool = False
    fid_samples: int = 10_000
    kid_subset_size: int = 1000
    classifier: Optional[str] = None  # noqa: UP045


@dataclass
class SampleOptions:
    n: int = 64
    label: Optional[int] = None  # noqa: UP045
    nrow: int = 8
    out: str = "${hydra:runtime.output_dir}/samples.png"
    pixels: bool = False
    n_reconstructions: int = 16
    interpolation: list[int] = field(default_factory=lambda: [0, 1])
    interpolation_steps: int = 10
    traversal_image: int = 0
    traversal_dims: Optional[list[int]] = None  # noqa: UP045
    span: float = 3.0
    steps: int = 9


@dataclass
class CheckpointJobConfig:
    """The keys both commands have."""

    ckpt_path: Optional[str] = None  # noqa: UP045
    device: str = "auto"
    seed: int = 0
    data: CheckpointDataConfig = field(default_factory=CheckpointDataConfig)


@dataclass
class EvaluateConfig(CheckpointJobConfig):
    eval: EvaluateOptions = field(default_factory=EvaluateOptions)


@dataclass
class SampleConfig(CheckpointJobConfig):
    sample: SampleOptions = field(default_factory=SampleOptions)

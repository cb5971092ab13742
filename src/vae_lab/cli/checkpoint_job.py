"""Typed schemas and range checks of the two commands that read a trained checkpoint.

`configs/evaluate.yaml` and `configs/sample.yaml` list `evaluate_schema` and
`sample_schema` first in their defaults (registered with the training schema by
`vae_lab.config.register_schemas`), so a misspelt key (`eval.kk=3`) or a wrong type
(`eval.limit=abc`) fails at composition, as one line. `check_evaluate` and `check_sample`
then check the values the types allow but the command cannot use, before any checkpoint
is read or anything is written; ranges that depend on the checkpoint (image indices,
latent dims) are checked once it is loaded, still before any output.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from vae_lab.cli.errors import UserError
from vae_lab.config import MAX_SEED, check_eval

SPLITS = ("train", "val", "test")


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
    """The keys both commands have (checked by `_check_common`)."""

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


def _at_least(value: Any, lowest: int, name: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        kind = "a positive integer" if lowest == 1 else f"an integer >= {lowest}"
        raise UserError(f"{name} must be {kind}, got {value!r}; for example {example}")


def _check_common(cfg: DictConfig) -> None:
    if not 0 <= cfg.seed <= MAX_SEED:
        raise UserError(
            f"seed must be between 0 and {MAX_SEED}, got {cfg.seed}; for example seed=0"
        )


def check_evaluate(cfg: DictConfig) -> None:
    """The values of `configs/evaluate.yaml` that its types allow but evaluate cannot use."""
    _check_common(cfg)
    e = cfg.eval
    check_eval(e, min_k=1)
    _at_least(e.batch_size, 1, "eval.batch_size", "eval.batch_size=500")
    if e.limit is not None:
        _at_least(e.limit, 1, "eval.limit", "eval.limit=1000 (or null: the whole split)")
    if e.split not in SPLITS:
        raise UserError(f"eval.split must be one of {', '.join(SPLITS)}, got {e.split!r}")


def check_sample(cfg: DictConfig) -> None:
    """The values of `configs/sample.yaml` that its types allow but sample cannot use, and a
    `sample.out` that cannot be written."""
    _check_common(cfg)
    s = cfg.sample
    for key in ("n", "nrow", "n_reconstructions", "interpolation_steps", "steps"):
        _at_least(s[key], 1, f"sample.{key}", f"sample.{key}={getattr(SampleOptions, key)}")
    if not 0 < s.span < math.inf:
        raise UserError(f"sample.span must be a positive number, got {s.span}; e.g. sample.span=3")
    if len(s.interpolation) != 2:
        raise UserError(
            f"sample.interpolation must be two test image indices, got {list(s.interpolation)}; "
            "for example sample.interpolation=[0,1]"
        )
    for i in s.interpolation:
        _at_least(i, 0, "sample.interpolation's indices", "sample.interpolation=[0,1]")
    _at_least(s.traversal_image, 0, "sample.traversal_image", "sample.traversal_image=0")
    if s.traversal_dims is not None:
        if not s.traversal_dims:
            raise UserError("sample.traversal_dims is empty; give dims like [0,3], or null: all")
        for d in s.traversal_dims:
            _at_least(d, 0, "sample.traversal_dims' dims", "sample.traversal_dims=[0,3]")
    _check_writable_png(Path(s.out))


def _check_writable_png(out: Path) -> None:
    """`out` names a .png whose directory exists and is writable, or can be made: its
    nearest existing ancestor is a writable directory. Nothing is created here."""
    if out.suffix.lower() != ".png":
        raise UserError(f"sample.out must name a .png file, got {str(out)!r}")
    if out.is_dir():
        raise UserError(f"sample.out={out} is a directory; name a .png file, e.g. {out}/s.png")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        why = "not a directory" if not ancestor.is_dir() else "not writable"
        raise UserError(
            f"cannot write sample.out={out}: {ancestor} is {why}; choose a writable place, "
            "e.g. sample.out=samples/s.png"
        )


def check_in_range(s: DictConfig, n_images: int, latent_dim: int) -> list[int]:
    """Once the checkpoint and its test set are loaded: the image indices and latent dims
    that `sample` names must exist. Returns the dims to traverse."""
    picked = [*s.interpolation, s.traversal_image]
    if any(i >= n_images for i in picked) or s.n_reconstructions > n_images:
        raise UserError(
            f"the test set has {n_images} images: sample.interpolation {list(s.interpolation)} "
            f"and sample.traversal_image {s.traversal_image} must be below {n_images}, and "
            f"sample.n_reconstructions ({s.n_reconstructions}) at most {n_images}"
        )
    dims = list(range(latent_dim)) if s.traversal_dims is None else list(s.traversal_dims)
    if any(d >= latent_dim for d in dims):
        raise UserError(f"sample.traversal_dims must be dims in [0, {latent_dim}), got {dims}")
    return dims

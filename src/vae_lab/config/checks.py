"""The checks of values that the schemas' types allow but a command cannot use.

Run before any work: `validate` on the composed training config (after Hydra has typed
it, `vae_lab.config.schemas`), `check_evaluate` and `check_sample` on those of the two
commands that read a checkpoint, before it is read or anything is written; ranges that
depend on the checkpoint (image indices, latent dims) are checked once it is loaded,
still before any output (`check_in_range`). Each failure is one `UserError` line naming
the key and an example of a good value.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_lab.cli.errors import UserError, renamed_key
from vae_lab.config.schemas import (
    BINARIZE_CHOICES,
    MAX_SEED,
    RENAMED_KEYS,
    SPLITS,
    VAL_SPLIT_CHOICES,
    ModelConfig,
    PathsConfig,
    RuntimeConfig,
    SampleOptions,
    TrainConfig,
)
from vae_lab.models.compat import check_model_config


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


def _no_renamed_keys(cfg: DictConfig) -> None:
    """A key that moved (`RENAMED_KEYS`), added with `+` or by a config file of the user's,
    is refused with one line naming the new one, before its part is built."""
    for old, new in RENAMED_KEYS.items():
        parent, _, key = old.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if isinstance(node, DictConfig) and key in node:
            raise renamed_key(old, new)


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
    _no_renamed_keys(cfg)
    _no_unread_keys(cfg)
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


# --- evaluate and sample ----------------------------------------------------------------


def _at_least(value: Any, lowest: int, name: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        kind = "a positive integer" if lowest == 1 else f"an integer >= {lowest}"
        raise UserError(f"{name} must be {kind}, got {value!r}; for example {example}")


def _check_common(cfg: DictConfig) -> None:
    """The keys both commands have (`CheckpointJobConfig`)."""
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
    that `sample` names must exist. `latent_dim`: the dims of the (top) latent layer, what
    traversals sweep. Returns the dims to traverse."""
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

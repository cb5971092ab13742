"""Resuming a run from a checkpoint: `ckpt_path=<last.ckpt>` or `ckpt_path=<run dir>`.

A resume continues the run it names, in that run's own directory: its checkpoints go on
being replaced there, its TensorBoard events go on in the same run (steps after the
checkpoint, logged by the process that was killed, are purged from the view), and its
`metrics.json` is written there at the end. Lightning restores weights, optimizer and
scheduler state, epoch and step counters and the checkpoint callback's record of the best
model; `RNGState` restores the random generators, so a resumed run matches, number for
number, one that was never stopped (on the same machine and settings).

Continuing exactly needs the same experiment, so the command must repeat the settings that
define what is trained (the run's `.hydra/overrides.yaml` lists them). Settings of how it
runs (`trainer.*` such as `max_epochs` to train on for longer, or `gradient_clip_val`,
loggers, callbacks, threads, where the data lives, the optimizer's `fused` or `foreach`
implementation) may differ. A mismatch is refused with
the differing keys named, never silently half-applied: a learning rate given on the
command line would otherwise be overwritten by the one in the optimizer state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vae_lab.pretrained as pretrained
from vae_lab.cli.errors import UserError, brief
from vae_lab.config.schemas import MODEL_GROUPS
from vae_lab.models.vae import IMPLEMENTATION
from vae_lab.run import checkpoints

# What a run trains: these must match between a checkpoint and the command resuming it
# (every group of the model: module, networks, likelihood, prior, objective, KL schedule,
# conditioning).
TRAINED_KEYS = ("latent_dim", "beta", *MODEL_GROUPS, "optimizer", "scheduler")
DATA_KEYS = (
    "_target_", "batch_size", "val_size", "split_seed", "shuffle_seed", "binarize",
    "binarize_seed",
)  # fmt: skip
TRAINING_STATE = ("optimizer_states", "loops", "epoch", "global_step")
# How an optimizer computes its update, not what the update is: a run may resume with
# another, and then computes it as configured now (VAE.on_load_checkpoint).
IMPLEMENTATION_KEYS = tuple(f"optimizer.{key}" for key in IMPLEMENTATION)


@dataclass(frozen=True)
class Resume:
    """A checkpoint to continue from, checked, and where the run it belongs to lives."""

    path: Path  # the .ckpt file
    run_dir: Path | None  # the run's directory, or None for a checkpoint outside one
    epoch: int
    global_step: int
    state_dict: Mapping[str, Any]


def _flatten(tree: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, tree


def _what_is_trained(config: Mapping[str, Any]) -> dict[str, Any]:
    data = config.get("data") or {}
    picked = {key: config.get(key) for key in TRAINED_KEYS}
    picked["data"] = {key: data.get(key) for key in DATA_KEYS}
    flat = dict(_flatten(picked, ""))
    return {key: value for key, value in flat.items() if key not in IMPLEMENTATION_KEYS}


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: checkpoint X, command Y` for each setting of what is trained that differs."""
    old, new = _what_is_trained(saved), _what_is_trained(current)
    return [
        f"{key}: checkpoint {old.get(key)!r}, command {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _run_dir_of(ckpt_path: Path, saved: Mapping[str, Any]) -> Path | None:
    """The run directory holding `<run>/checkpoints/<file>`, spelt as the run spelt it, so
    Lightning's checkpoint callback recognizes its own directory and keeps its record."""
    if ckpt_path.parent.name != "checkpoints":
        return None
    run_dir = ckpt_path.parent.parent
    original = (saved.get("paths") or {}).get("output_dir")
    if original and Path(original).is_dir() and os.path.samefile(original, run_dir):
        return Path(original)
    return run_dir.resolve()


def prepare(ckpt_path: str, config: Mapping[str, Any]) -> Resume:
    """Load and check the checkpoint that `ckpt_path` names against the run's `config`."""
    path = checkpoints.resolve(ckpt_path)
    name = pretrained.shipped_name(path)
    if name is not None:
        raise UserError(
            f"{name} is a shipped model: weights and config without the optimizer state "
            "training continues from, so it cannot be resumed; to train it again, run its "
            f"retrain command ({pretrained.LIST_HINT})"
        )
    ckpt = checkpoints.load(path)  # weights-only; missing, corrupt, foreign: a UserError
    missing = [key for key in TRAINING_STATE if key not in ckpt]
    if missing:
        raise UserError(
            f"{path} holds weights but no training state ({', '.join(missing)} missing), so "
            "training cannot continue from it; resume from a checkpoints/last.ckpt written "
            "by `python -m vae_lab.train`"
        )
    saved = checkpoints.upgrade(ckpt["hyper_parameters"]["config"])
    diff = differences(saved, config)
    if diff:
        overrides = path.parent.parent / ".hydra" / "overrides.yaml"
        where = f" ({overrides} lists them)" if overrides.is_file() else ""
        raise UserError(
            f"{path} was trained with other settings than this command gives: "
            f"{'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}. To resume, repeat "
            f"the original run's options{where}; to train something new, drop ckpt_path"
        )
    return Resume(
        path=path,
        run_dir=_run_dir_of(path, saved),
        epoch=int(ckpt["epoch"]),
        global_step=int(ckpt["global_step"]),
        state_dict=ckpt["state_dict"],
    )


def check_fits(resume: Resume, model: Any) -> None:
    """Refuse a checkpoint whose weights do not fit the model built for this run."""
    try:
        model.load_state_dict(resume.state_dict)
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(
            f"{resume.path} does not fit the model of this config (written by an "
            f"incompatible version of vae_lab?): {brief(e)}"
        ) from e

"""Modules and keys that moved, so that a config saved before the move still means what it
meant.

A checkpoint keeps the config its run was trained with, `_target_`s and all: every run
names its checkpoint writer (`trainer.plugins`). Before the run and command-line plumbing
became the packages `vae_lab.run` and `vae_lab.cli`, that was
`vae_lab.checkpoint_io.AtomicCheckpointIO`. `checkpoints.load` passes each checkpoint's
config through `renamed` first, so such a run resumes, evaluates and samples as it did:
its `_target_`s are then checked (`allowed_targets`) and built under today's names.
Likewise a key that moved (`config.schemas.RENAMED_KEYS`: `kl_schedule.free_bits` is
`objective.free_bits` now) is read under its new name (`moved_keys`, through
`checkpoints.upgrade`), so such a run evaluates, samples and resumes unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from vae_lab.config.schemas import RENAMED_KEYS

# old module -> where it lives now; a moved module is one more row
MOVED = {
    "vae_lab.allowed_targets": "vae_lab.run.allowed_targets",
    "vae_lab.checkpoint_io": "vae_lab.run.checkpoint_io",
    "vae_lab.checkpoints": "vae_lab.run.checkpoints",
    "vae_lab.outputs": "vae_lab.run.outputs",
    "vae_lab.resume": "vae_lab.run.resume",
    "vae_lab.run_dir": "vae_lab.run.directory",
    "vae_lab.runtime": "vae_lab.run.runtime",
    "vae_lab.slurm": "vae_lab.run.slurm",
    "vae_lab.sweeps": "vae_lab.run.sweeps",
    "vae_lab.checkpoint_job": "vae_lab.config.schemas",
    "vae_lab.cli.checkpoint_job": "vae_lab.config.schemas",
    "vae_lab.errors": "vae_lab.cli.errors",
    "vae_lab.hydra_errors": "vae_lab.cli.hydra_errors",
}


def current_name(target: str) -> str:
    """Today's dotted name for `target`: `vae_lab.checkpoint_io.AtomicCheckpointIO` ->
    `vae_lab.run.checkpoint_io.AtomicCheckpointIO`; a name that did not move as it is."""
    for old, new in MOVED.items():
        if target.startswith(f"{old}."):
            return new + target[len(old) :]
    return target


def renamed(tree: Any) -> Any:
    """A copy of `tree` (a saved config: dicts and lists at any depth) with every string
    `_target_` under today's name."""
    if isinstance(tree, dict):
        return {
            key: current_name(value)
            if key == "_target_" and isinstance(value, str)
            else renamed(value)
            for key, value in tree.items()
        }
    if isinstance(tree, list):
        return [renamed(value) for value in tree]
    return tree


def moved_keys(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved config with each key of `RENAMED_KEYS` it holds under today's name:
    taken out of its old node and put into its new one (which keeps a value of its own)."""
    config = copy.deepcopy(config)
    for old, new in RENAMED_KEYS.items():
        *old_path, old_key = old.split(".")
        *new_path, new_key = new.split(".")
        source, target = _node(config, old_path), _node(config, new_path)
        if source is None or old_key not in source:
            continue
        value = source.pop(old_key)
        if target is not None:
            target.setdefault(new_key, value)
    return config


def _node(config: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    node: Any = config
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None

"""Modules that moved, so that a config saved before the move still names what it meant.

A checkpoint keeps the config its run was trained with, `_target_`s and all: every run
names its checkpoint writer (`trainer.plugins`). Before the run and command-line plumbing
became the packages `vae_lab.run` and `vae_lab.cli`, that was
`vae_lab.checkpoint_io.AtomicCheckpointIO`. `checkpoints.load` passes each checkpoint's
config through `renamed` first, so such a run resumes, evaluates and samples as it did:
its `_target_`s are then checked (`allowed_targets`) and built under today's names.
"""

from __future__ import annotations

from typing import Any

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

"""What a checkpoint's saved config may name: checked whole before anything of it is used.

A checkpoint is data from elsewhere, and so is the config it carries. Rebuilding a model
from it goes through Hydra's `instantiate`, which calls whatever a `_target_` names with
whatever arguments sit beside it, and recurses into every nested dict and list:
`shutil.copyfile`, `pathlib.Path.touch`, or `vae_lab.cli.entry.shutil.rmtree` (a function
reached through a module of ours) would each run. So `check` walks the whole saved config,
every dict and list at any depth, and refuses it unless every `_target_` names a class

- reached from `vae_lab`, `torch.optim` or `lightning.pytorch` by attribute lookup,
  importing nothing outside them (no name part may start with `_`: no `__main__`, no
  private helper), the same lookup Hydra's `_locate` makes;
- defined there, not merely imported there (`vae_lab.train.Path` is pathlib's);
- and, for the two libraries, of a kind vae_lab builds from config: an optimizer or LR
  scheduler of `torch.optim`; a Lightning `Trainer`, callback, logger or checkpoint
  writer (anything of vae_lab's own is allowed: the project's encoders, likelihoods,
  priors, callbacks and data module).

It also refuses any `${...}` interpolation: vae_lab saves the config resolved, and a
resolver such as `oc.create` could produce a `_target_` at build time that no walk saw.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from vae_lab.cli.errors import UserError

PACKAGES = ("vae_lab", "torch.optim", "lightning.pytorch")


def _library_kinds() -> dict[str, tuple[type, ...]]:
    """The base classes a class of each library must derive from (vae_lab: any class)."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.plugins.io import CheckpointIO

    schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return {
        "vae_lab": (object,),
        "torch.optim": (torch.optim.Optimizer, *schedulers),
        "lightning.pytorch": (pl.Trainer, pl.Callback, Logger, CheckpointIO),
    }


def _package_of(name: str) -> str | None:
    return next((p for p in PACKAGES if name == p or name.startswith(f"{p}.")), None)


def _walk(tree: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(`where`, value) for every `_target_`, and refuse interpolations on the way."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{where}.{key}" if where else str(key)
            if "${" in str(key):
                raise _refused(here, f"a key with an interpolation ({key!r})")
            if key == "_target_":
                yield where, value
            else:
                yield from _walk(value, here)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _walk(value, f"{where}[{i}]")
    elif isinstance(tree, str) and "${" in tree:
        raise _refused(where, f"an interpolation ({tree[:80]!r})")


def _locate(target: str) -> Any:
    """The object `target` names, found as Hydra finds it, or None where finding it would
    import anything outside `PACKAGES` or the name is not a plain public dotted name."""
    parts = target.split(".")
    package = _package_of(target)
    if package is None or not all(p.isidentifier() and not p.startswith("_") for p in parts):
        return None
    start = package.count(".") + 1
    obj: Any = importlib.import_module(package)  # what Hydra reaches by attribute lookup
    for i, part in enumerate(parts[start:], start=start + 1):
        if isinstance(obj, ModuleType) and _package_of(obj.__name__) is None:
            return None  # a module reached through ours (`vae_lab.cli.entry.shutil`)
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, ModuleType):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                return None
        else:
            return None
    return obj


def _refused(where: str, what: str) -> UserError:
    return UserError(
        f"refused to use the checkpoint: its config holds {what} at {where}; a checkpoint's "
        f"config may only name classes of {', '.join(PACKAGES)} (anything else could run "
        "code when built), so nothing of it was built. Use a checkpoint written by "
        "`python -m vae_lab.train` from a source you trust"
    )


def check(config: Any) -> None:
    """Refuse (UserError) a saved config that names anything but the allowed classes."""
    kinds = _library_kinds()
    for where, target in _walk(config, ""):
        obj = _locate(target) if isinstance(target, str) else None
        defined_in = _package_of(getattr(obj, "__module__", "") or "")
        if not inspect.isclass(obj) or defined_in is None or not issubclass(obj, kinds[defined_in]):
            raise _refused(where, f"_target_ {target!r}")

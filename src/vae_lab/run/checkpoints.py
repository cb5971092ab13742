"""Checkpoints of this project: find one, load it weights-only, check it, rebuild its model.

A checkpoint is data from somewhere else, so it is read with `torch.load(weights_only=True)`:
tensors, numbers, strings and containers only. A file that carries pickled Python objects
(which could run code when unpickled) is refused, never loaded. Whatever else a path holds
(text, random bytes, nothing, a truncated file, another program's checkpoint, a directory)
is one `UserError` saying what it is not. `load` is the one way in for every command that
reads a checkpoint (evaluate, sample, train with ckpt_path; `resolve` turns the name of a
shipped model, `vae_lab.pretrained`, into its file), and it refuses a checkpoint
whose saved config names anything but vae_lab's own kinds of class (`allowed_targets`)
before anything of it is used. A config saved before a module of vae_lab moved is read
under today's names (`moved`).
"""

from __future__ import annotations

import codecs
import copy
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import vae_lab.pretrained as pretrained
from vae_lab.cli.errors import UserError, brief
from vae_lab.models.vae import VAE
from vae_lab.run import allowed_targets, moved

LAST = Path("checkpoints") / "last.ckpt"
FIX = "pass a .ckpt written by `python -m vae_lab.train` (or its run directory)"
# How torch's weights-only unpickler names a callable it refused to import.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)|(\S+) was not an allowed global")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 is a zip archive
_PICKLE_PROTOCOL = 0x80  # the first byte of a pickle (protocol 2 and up): torch's old format
_PARTS = "vae_lab.models.components"


def resolve(path: str | Path) -> Path:
    """The checkpoint file `path` names: a `.ckpt` file, a run directory for its last one, or
    the name of a shipped model (`vae_lab.pretrained`) where no such path exists."""
    p = Path(path).expanduser()
    if not p.exists() and str(path) in pretrained.names():
        return pretrained.checkpoint(str(path))
    if p.is_dir():
        if (p / LAST).is_file():
            return p / LAST
        raise UserError(
            f"{p} is a directory without {LAST}; pass a run directory that has checkpoints, "
            "or the path of a .ckpt file"
        )
    if not p.exists():
        raise UserError(
            f"checkpoint {p} does not exist; pass the path of a .ckpt file, or the name of a "
            f"shipped model ({pretrained.LIST_HINT})"
        )
    if not p.is_file():
        raise UserError(f"{p} is not a regular file (a device or pipe?), not a checkpoint; {FIX}")
    return p


def _unreadable(p: Path, error: Exception) -> UserError:
    """What a file that torch cannot read is, judged from its first bytes."""
    with p.open("rb") as f:
        head = f.read(4096)
    if not head:
        what = "the file is empty"
    elif head.startswith(_ZIP_MAGIC):
        what = f"it is a PyTorch zip archive cut short or damaged ({brief(error, 120)})"
    elif head[0] == _PICKLE_PROTOCOL:
        what = "it is a pickle cut short or damaged (PyTorch's old format)"
    else:
        try:  # incremental: a character cut at the 4096th byte is still text
            codecs.getincrementaldecoder("utf-8")().decode(head.replace(b"\0", b"\xff"))
            what = "it is a text file"
        except UnicodeDecodeError:
            what = "its bytes are in neither of PyTorch's formats (zip archive, pickle)"
    return UserError(f"{p} is not a readable checkpoint: {what}; {FIX}")


def _read(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _UNSAFE_GLOBAL.search(str(e))
        if unsafe is None:  # not a pickle torch can read at all
            raise _unreadable(p, e) from e
        raise UserError(
            f"refused to load {p}: it holds pickled Python objects "
            f"({unsafe.group(1) or unsafe.group(2)}), which "
            "could run code when loaded; only weights-only checkpoints are read. Re-save it "
            "as tensors from a source you trust"
        ) from e
    except PermissionError as e:
        raise UserError(f"cannot read {p}: permission denied; {FIX}") from e
    except Exception as e:  # whatever a malformed file makes the unpickler raise
        raise _unreadable(p, e) from e


def _foreign(p: Path, ckpt: Any) -> UserError:
    """A readable torch file that is not a vae_lab checkpoint: say what it holds instead."""
    if (
        isinstance(ckpt, Mapping)
        and ckpt
        and all(isinstance(v, torch.Tensor) for v in ckpt.values())
    ):
        what = (
            f"a bare state_dict ({len(ckpt)} tensors, as `torch.save(model.state_dict())` writes)"
        )
    elif isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        what = "a Lightning checkpoint of another program (no vae_lab run config in it)"
    else:
        what = f"a {type(ckpt).__name__}, not a checkpoint"
    return UserError(
        f"{p} is not a vae_lab checkpoint: it holds {what}, and the model is rebuilt from the "
        f"run config a vae_lab checkpoint saves; {FIX}"
    )


def _shape_ok(shape: Any) -> bool:
    return (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    )


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of this project, weights-only, on the CPU, and check its config."""
    p = resolve(path)
    ckpt = _read(p)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or not isinstance(hparams.get("config"), dict):
        raise _foreign(p, ckpt)
    if not isinstance(ckpt.get("state_dict"), dict) or not _shape_ok(hparams.get("input_shape")):
        raise UserError(
            f"{p} is a damaged vae_lab checkpoint: its state_dict or input_shape is missing "
            f"or malformed; {FIX}"
        )
    hparams = ckpt["hyper_parameters"] = moved.renamed(hparams)  # written before a move
    allowed_targets.check(hparams)  # before anything of it is built or compared
    saved_config(ckpt)  # a config OmegaConf cannot take is refused here, not later
    return cast(dict[str, Any], ckpt)


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's layout: one saved before the model's parts had groups of
    their own gets them (`_with_groups`), and keys that moved since are read under their new
    names (`moved.moved_keys`: `kl_schedule.free_bits` -> `objective.free_bits`). What the
    run trained is unchanged, so its weights load as they are."""
    return moved.moved_keys(config if "module" in config else _with_groups(config))


def _with_groups(config: dict[str, Any]) -> dict[str, Any]:
    """A config saved before the model's parts had groups of their own: the prior moves out
    of `model`, and the module, objective, KL schedule (constant at the run's `beta`) and
    conditioning that such a run had are written out."""
    config = copy.deepcopy(config)
    model = dict(config.get("model") or {})
    latent = {"latent_dim": config.get("latent_dim")}
    config["prior"] = model.pop("prior", None) or {
        "_target_": f"{_PARTS}.prior.StandardNormalPrior",
        **latent,
    }
    config["model"] = model
    config["module"] = {"_target_": "vae_lab.models.vae.VAE"}
    config["objective"] = {"_target_": f"{_PARTS}.objectives.ELBO", "free_bits": 0.0}
    schedule = f"{_PARTS}.kl_schedules.ConstantKL"
    config["kl_schedule"] = {"_target_": schedule, "beta": config.get("beta", 1.0)}
    config["conditioning"] = {"_target_": f"{_PARTS}.conditioning.NoConditioning"}
    return config


def saved_config(ckpt: dict[str, Any]) -> DictConfig:
    """The composed config the checkpoint's run was trained with (in today's layout)."""
    try:
        return cast(DictConfig, OmegaConf.create(upgrade(ckpt["hyper_parameters"]["config"])))
    except OmegaConfBaseException as e:
        raise UserError(f"the checkpoint's saved config is malformed: {brief(e)}; {FIX}") from e


def build_model(ckpt: dict[str, Any]) -> VAE:
    """The trained VAE: rebuilt from the checkpoint's own config, its weights loaded, eval mode."""
    from hydra.errors import InstantiationException

    from vae_lab.models.build import build_vae

    hparams = ckpt["hyper_parameters"]
    allowed_targets.check(hparams)  # again: `ckpt` may have changed since `load`
    cfg = saved_config(ckpt)
    try:
        model = build_vae(cfg, hparams["input_shape"], hparams.get("num_classes", 10))
        model.load_state_dict(ckpt["state_dict"])
    except (InstantiationException, KeyError, RuntimeError, TypeError, ValueError) as e:
        raise UserError(
            "the checkpoint does not fit the model its config describes (written by an "
            f"incompatible version of vae_lab?): {brief(e)}"
        ) from e
    return model.eval()

"""Checkpoints of this project: find one, load it weights-only, rebuild its model.

A checkpoint is data from somewhere else, so it is read with `torch.load(weights_only=True)`:
tensors, numbers, strings and containers only. A file that carries pickled Python objects
(which could run code when unpickled) is refused, never loaded.
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf

from vae_lab.config import MODEL_GROUPS
from vae_lab.errors import UserError, brief
from vae_lab.models.vae import VAE

LAST = Path("checkpoints") / "last.ckpt"
# How torch's weights-only unpickler names a callable it refused to import.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)|(\S+) was not an allowed global")

# A checkpoint's config is data from elsewhere too: rebuilding its model instantiates the
# `_target_`s it names, so only these may appear there. Else a weights-only file whose
# config named `os.system` as its encoder would run a command when loaded.
SAFE_TARGETS = ("vae_lab.", "torch.optim.")
BUILT_FROM_CONFIG = (*MODEL_GROUPS, "optimizer", "scheduler")
_PARTS = "vae_lab.models.components"


def resolve(path: str | Path) -> Path:
    """The checkpoint file `path` names: a `.ckpt` file, or a run directory for its last one."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / LAST).is_file():
            return p / LAST
        raise UserError(
            f"{p} is a directory without {LAST}; pass a run directory that has checkpoints, "
            "or the path of a .ckpt file"
        )
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist; pass the path of a .ckpt file")
    return p


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of this project, weights-only, on the CPU."""
    p = resolve(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _UNSAFE_GLOBAL.search(str(e))
        if unsafe is None:  # not a pickle torch can read at all
            raise UserError(
                f"{p} is not a readable PyTorch checkpoint (truncated or corrupt?)"
            ) from e
        raise UserError(
            f"refused to load {p}: it holds pickled Python objects "
            f"({unsafe.group(1) or unsafe.group(2)}), which "
            "could run code when loaded; only weights-only checkpoints are read. Re-save it "
            "as tensors from a source you trust"
        ) from e
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise UserError(
            f"{p} is not a readable PyTorch checkpoint (truncated or corrupt?): {brief(e)}"
        ) from e
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in hparams:
        raise UserError(
            f"{p} is not a vae_lab checkpoint (it has no saved run config); pass a .ckpt "
            "written by `python -m vae_lab.train`"
        )
    return cast(dict[str, Any], ckpt)


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
    """A config saved before the model's parts had groups of their own, in today's layout:
    the prior moves out of `model`, and the module, objective, KL schedule (constant at the
    run's `beta`) and conditioning that such a run had are written out. What the run
    trained is unchanged, so its weights load as they are."""
    if "module" in config:
        return config
    config = copy.deepcopy(config)
    model = dict(config.get("model") or {})
    latent = {"latent_dim": config.get("latent_dim")}
    config["prior"] = model.pop("prior", None) or {
        "_target_": f"{_PARTS}.prior.StandardNormalPrior",
        **latent,
    }
    config["model"] = model
    config["module"] = {"_target_": "vae_lab.models.vae.VAE"}
    config["objective"] = {"_target_": f"{_PARTS}.objectives.ELBO"}
    schedule = f"{_PARTS}.kl_schedules.ConstantKL"
    config["kl_schedule"] = {
        "_target_": schedule,
        "beta": config.get("beta", 1.0),
        "free_bits": 0.0,
    }
    config["conditioning"] = {"_target_": f"{_PARTS}.conditioning.NoConditioning"}
    return config


def saved_config(ckpt: dict[str, Any]) -> DictConfig:
    """The composed config the checkpoint's run was trained with (in today's layout)."""
    return cast(DictConfig, OmegaConf.create(upgrade(ckpt["hyper_parameters"]["config"])))


def _targets(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        own = [str(tree["_target_"])] if "_target_" in tree else []
        return own + [t for value in tree.values() for t in _targets(value)]
    if isinstance(tree, list):
        return [t for value in tree for t in _targets(value)]
    return []


def check_targets(config: dict[str, Any]) -> None:
    """Refuse a saved config that would instantiate anything outside `SAFE_TARGETS`."""
    for target in _targets({key: config.get(key) for key in BUILT_FROM_CONFIG}):
        if not target.startswith(SAFE_TARGETS):
            raise UserError(
                f"refused to rebuild the model: the checkpoint's config names {target!r}, and "
                f"only classes under {' or '.join(SAFE_TARGETS)} are built from a "
                "checkpoint (anything else could run code); use a checkpoint from a trusted run"
            )


def build_model(ckpt: dict[str, Any]) -> VAE:
    """The trained VAE: rebuilt from the checkpoint's own config, its weights loaded, eval mode."""
    from hydra.errors import InstantiationException

    from vae_lab.models.build import build_vae

    hparams = ckpt["hyper_parameters"]
    check_targets(upgrade(hparams["config"]))
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

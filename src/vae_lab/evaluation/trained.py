"""A trained model and its data, as the `evaluate` and `sample` commands need them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import cast

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import vae_lab.pretrained as pretrained
from vae_lab.cli.errors import UserError, brief
from vae_lab.config.schemas import SPLITS, DataConfig
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.models.vae import VAE
from vae_lab.run import checkpoints


@dataclass
class Trained:
    model: VAE  # in eval mode, on `device`
    config: DictConfig  # the config the run was trained with
    checkpoint: Path
    # The run the checkpoint belongs to (its TensorBoard log directory); None for a shipped
    # model (vae_lab.pretrained), which belongs to no run and lives in the installed package.
    run_dir: Path | None
    input_shape: tuple[int, ...]  # (C, H, W) the model was trained on
    epoch: int
    global_step: int


def pick_device(name: str) -> torch.device:
    """`auto` is a GPU where torch finds one, else the CPU; a named GPU must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"device={name} is not a torch device; use auto, cpu or cuda") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} asks for a GPU, but torch finds none; use device=cpu")
    return device


def load_trained(cfg: DictConfig) -> Trained:
    """The model of `cfg.ckpt_path` (a .ckpt, a run dir or the name of a shipped model),
    rebuilt from its own config."""
    if not cfg.ckpt_path:
        raise UserError(
            "ckpt_path is required: pass ckpt_path=outputs/runs/<date>/<time>_<token>/checkpoints/"
            "last.ckpt (or just the run directory, or the name of a shipped model)"
        )
    device = pick_device(str(cfg.device))
    path = checkpoints.resolve(cfg.ckpt_path)
    ckpt = checkpoints.load(path)
    model = checkpoints.build_model(ckpt).to(device)
    return Trained(
        model=model,
        config=checkpoints.saved_config(ckpt),
        checkpoint=path,
        run_dir=_run_dir(path),
        input_shape=tuple(ckpt["hyper_parameters"]["input_shape"]),
        epoch=int(ckpt.get("epoch", -1)),
        global_step=int(ckpt.get("global_step", 0)),
    )


def _run_dir(path: Path) -> Path | None:
    """The run directory of the checkpoint file `path`; None for a shipped model's."""
    if pretrained.shipped_name(path) is not None:
        return None
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def split_data(
    trained: Trained, cfg: DictConfig, split: str, eight_bit: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, C, H, W), labels (N,)) of `split`, cut and binarized as in training:
    the same held-out validation images, the same fixed binarization of val and test.
    With `eight_bit`, the 8-bit images of the same split, even where the run binarized them."""
    if split not in SPLITS:
        raise UserError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    datamodule = _datamodule(trained.config, cfg, eight_bit)
    datamodule.load()
    if datamodule.input_shape != trained.input_shape:
        raise UserError(
            f"the data's images are {datamodule.input_shape} but the checkpoint was trained "
            f"on {trained.input_shape}; pass data.root=<the directory of its data set>"
        )
    images, labels = datamodule.splits[split]
    return images, labels


def _datamodule(
    saved: DictConfig, cfg: DictConfig, eight_bit: bool = False
) -> FashionMNISTDataModule:
    """The project's own data module, built with the checkpoint's saved values (typed by
    the training schema) and never through a `_target_` of the checkpoint; `data.root` and
    `data.cache_dir` of the command win, and nothing is downloaded. With `eight_bit`, the
    images stay 8-bit even where the run binarized them."""
    data = saved.get("data")
    target = data.get("_target_") if isinstance(data, DictConfig) else None
    if target != DataConfig._target_:
        raise UserError(
            f"the checkpoint's data module is {target!r}; evaluate and sample rebuild only "
            f"{DataConfig._target_}, the data vae_lab trains on"
        )
    try:
        values = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(DataConfig), data))
    except OmegaConfBaseException as e:
        raise UserError(f"the checkpoint's data config is malformed: {brief(e)}") from e
    for key in ("root", "cache_dir"):
        if cfg.data.get(key) is not None:
            values[key] = cfg.data[key]
    if eight_bit:
        values.binarize = "none"
    kwargs = {f.name: values[f.name] for f in fields(DataConfig) if f.name != "_target_"}
    return FashionMNISTDataModule(**{**kwargs, "download": False})

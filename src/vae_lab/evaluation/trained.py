"""A trained model and its data, as the `evaluate` and `sample` commands need them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from vae_lab import checkpoints
from vae_lab.errors import UserError
from vae_lab.models.vae import VAE

SPLITS = ("train", "val", "test")


@dataclass
class Trained:
    model: VAE  # in eval mode, on `device`
    config: DictConfig  # the config the run was trained with
    checkpoint: Path
    run_dir: Path  # the run the checkpoint belongs to: its TensorBoard log directory
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
    """The model of `cfg.ckpt_path` (a .ckpt or a run dir), rebuilt from its own config."""
    if not cfg.ckpt_path:
        raise UserError(
            "ckpt_path is required: pass ckpt_path=outputs/runs/<date>/<time>/checkpoints/"
            "last.ckpt (or just the run directory)"
        )
    device = pick_device(str(cfg.device))
    path = checkpoints.resolve(cfg.ckpt_path)
    ckpt = checkpoints.load(path)
    model = checkpoints.build_model(ckpt).to(device)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return Trained(
        model=model,
        config=checkpoints.saved_config(ckpt),
        checkpoint=path,
        run_dir=run_dir,
        input_shape=tuple(ckpt["hyper_parameters"]["input_shape"]),
        epoch=int(ckpt.get("epoch", -1)),
        global_step=int(ckpt.get("global_step", 0)),
    )


def split_data(
    trained: Trained, cfg: DictConfig, split: str, eight_bit: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, C, H, W), labels (N,)) of `split`, cut and binarized as in training:
    the same held-out validation images, the same fixed binarization of val and test.
    With `eight_bit`, the 8-bit images of the same split, even where the run binarized them."""
    if split not in SPLITS:
        raise UserError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    data_cfg = trained.config.data.copy()
    with open_dict(data_cfg):
        for key in ("root", "cache_dir"):
            if cfg.data.get(key) is not None:
                data_cfg[key] = cfg.data[key]
        data_cfg.download = False
        if eight_bit:
            data_cfg.binarize = "none"
    datamodule = instantiate(data_cfg)
    datamodule.load()
    if datamodule.input_shape != trained.input_shape:
        raise UserError(
            f"the data's images are {datamodule.input_shape} but the checkpoint was trained "
            f"on {trained.input_shape}; pass data.root=<the directory of its data set>"
        )
    images, labels = datamodule.splits[split]
    return images, labels

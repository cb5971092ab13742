"""vae_lab: config-driven Variational Autoencoder experiments on Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from vae_lab.models.vae import VAE

__version__ = "0.1.0"


def load(path: str | Path, device: str | torch.device = "cpu") -> VAE:
    """The trained model of a run directory (its checkpoints/last.ckpt), a .ckpt file, or
    the name of a model that ships with vae_lab (`python -m vae_lab.pretrained` lists them).

    Loaded as `python -m vae_lab.evaluate` loads it: weights-only (a file holding pickled
    code is refused), rebuilt from the checkpoint's own config, which may name classes of
    vae_lab and torch.optim only. Returned in eval mode on `device`; its `sample`,
    `reconstruct`, `encode`, `decode` and bounds take (images, labels) batches.

        model = vae_lab.load("outputs/runs/2025-01-01/12-00-00_a1b2c3")  # or a shipped name
        images = model.sample(16)  # (16, 1, 28, 28), the likelihood's mean, in [0, 1]
    """
    from vae_lab.run import checkpoints

    ckpt = checkpoints.load(path)
    return checkpoints.build_model(ckpt).to(device)

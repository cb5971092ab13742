"""Image grids during training: test inputs beside reconstructions, and samples."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import save_image

from vae_lab.callbacks.cadence import EpochPictures
from vae_lab.evaluation import pictures
from vae_lab.models.vae import VAE
from vae_lab.run.outputs import replaced_whole


class ImageGrids(EpochPictures):
    """Logs `val/reconstructions` and `val/samples` to TensorBoard after the first validation
    epoch, every `every_n_epochs`-th and at the end of training (`callbacks.cadence`).

    The test images are picked once and the samples drawn with the same seed every time
    (through the prior's own sampler), so the grids of successive epochs show the same
    inputs and the same noise: what changes is the model. A class-conditional model's
    sample grid has a row per class, `nrow` draws each. The latest grids are also written
    as PNG files under `<run dir>/images/`.
    """

    def __init__(
        self,
        n_images: int = 16,
        n_samples: int = 64,
        seed: int = 0,
        nrow: int = 8,
        every_n_epochs: int = 5,
    ) -> None:
        super().__init__(every_n_epochs)
        self.n_images, self.n_samples, self.seed, self.nrow = n_images, n_samples, seed, nrow
        self.inputs: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        first = next(iter(datamodule.test_dataloader()))
        self.inputs = first.images[: self.n_images].float().div(255.0)
        self.labels = first.labels[: self.n_images]

    def draw(self, trainer: L.Trainer, pl_module: VAE) -> None:
        assert self.inputs is not None
        generator = torch.Generator().manual_seed(self.seed)
        grids = {
            # row 1: inputs, row 2: their reconstructions
            "reconstructions": pictures.reconstructions(pl_module, self.inputs, self.labels),
            "samples": pictures.samples(pl_module, self.n_samples, self.nrow, generator),
        }
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for name, grid in grids.items():
                    logger.experiment.add_image(f"val/{name}", grid, trainer.global_step)
        out_dir = Path(trainer.default_root_dir) / "images"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, grid in grids.items():
            with replaced_whole(out_dir / f"{name}.png") as tmp:  # never half a picture
                save_image(grid, tmp, format="png")

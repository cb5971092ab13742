"""When the picture callbacks draw: after some validation epochs of a fit, and at its end.

Drawing the grids and latent pictures after every validation epoch costs an MLP epoch
about as much as its validation (docs/performance.md, "The everyday epoch"), so they are
drawn after the first validation epoch of a fit (something to look at early), after every
`every_n_epochs`-th one (the n-th, 2n-th, ... validation epoch: epochs n - 1, 2n - 1, ...
where every epoch is validated; counted afresh when a run resumes), and once more for the
model that
training ended with (the last epoch, or the epoch early stopping stopped at) when the last
drawing did not already show it. `every_n_epochs: 1` draws after every validation epoch.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.tensorboard import SummaryWriter

from vae_lab.models.vae import VAE


def tensorboard_writers(trainer: L.Trainer) -> list[SummaryWriter]:
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


class EpochPictures(L.Callback):
    """A callback that draws pictures of the model (`draw`) on the cadence above, inside fit
    (not the sanity check, not a final `trainer.validate()`), on rank zero only."""

    needs_tensorboard = False  # True: draw only where a TensorBoard logger will show it

    def __init__(self, every_n_epochs: int = 5) -> None:
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise ValueError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be a positive integer, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.drawn_at_step: int | None = None  # the global step of the last drawing
        self.validations = 0  # validation epochs of this fit so far

    def draw(self, trainer: L.Trainer, pl_module: VAE) -> None:
        raise NotImplementedError

    def _may_draw(self, trainer: L.Trainer) -> bool:
        return (
            trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and trainer.is_global_zero
            and (bool(tensorboard_writers(trainer)) or not self.needs_tensorboard)
        )

    def due(self, validation: int) -> bool:
        """Whether the `validation`-th validation epoch of this fit (from 1) is one to draw
        after: the first, and every n-th."""
        return validation == 1 or validation % self.every_n_epochs == 0

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, VAE)
        training = pl_module.training
        pl_module.eval()  # at the end of fit the module may be back in train mode
        try:
            self.draw(trainer, pl_module)
        finally:
            pl_module.train(training)
        self.drawn_at_step = trainer.global_step

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._may_draw(trainer):
            return
        self.validations += 1
        if self.due(self.validations):
            self._draw(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._may_draw(trainer) and self.drawn_at_step != trainer.global_step:
            self._draw(trainer, pl_module)

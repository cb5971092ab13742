"""Stop a run the moment its loss stops being a finite number.

Once a loss is NaN or infinite, every later step trains on garbage and every later metric
is garbage too; Lightning would carry on to the last epoch and write the garbage out. The
guard checks the training loss before its backward pass (so the bad step never updates the
weights) and each validation and test batch, and raises `TrainingDiverged` with what
happened, where, and what to try. No checkpoint is written after that, so the newest one
on disk is the last good one.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from vae_lab.cli.errors import TrainingDiverged


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The newest checkpoint this run wrote (its `last.ckpt`), or None."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    newest = [
        c.last_model_path or (c.best_model_path if c.monitor is None else "")
        for c in trainer.checkpoint_callbacks
        if isinstance(c, ModelCheckpoint)
    ]
    kept = [p for p in newest if p] or [getattr(trainer.checkpoint_callback, "best_model_path", "")]
    return kept[0] or None


def _learning_rate(trainer: L.Trainer) -> str:
    try:
        return f"{trainer.optimizers[0].param_groups[0]['lr']:g}"
    except (IndexError, KeyError):
        return "?"


class DivergenceGuard(L.Callback):
    """Raises `TrainingDiverged` on the first non-finite loss of any stage."""

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        self._check(trainer, loss, "training")

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        self._check(trainer, outputs, "validation")

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        self._check(trainer, outputs, "test")

    def _check(self, trainer: L.Trainer, loss: Any, stage: str) -> None:
        if not isinstance(loss, torch.Tensor):
            return
        # A scalar is read directly, cheaper on the CPU than torch.isfinite(loss).all()
        # (docs/performance.md). On a GPU either read waits for the step to end.
        if loss.numel() == 1:
            finite = math.isfinite(loss.item())
        else:
            finite = bool(torch.isfinite(loss).all())
        if trainer.world_size > 1:  # every rank stops together, or the others hang
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise TrainingDiverged(self.describe(trainer, stage, float(loss.detach().sum())))

    @staticmethod
    def describe(trainer: L.Trainer, stage: str, value: float) -> str:
        """The one line the user sees: what, where, what is kept, what to try."""
        kept = last_checkpoint(trainer)
        kept_text = (
            f"the last good checkpoint is kept: {kept}"
            if kept
            else "no checkpoint had been written yet"
        )
        return (
            f"training diverged: the {stage} loss is {value} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}); {kept_text}. Try a lower learning rate "
            f"(optimizer.lr, now {_learning_rate(trainer)}), gradient clipping "
            "(trainer.gradient_clip_val=1.0, which may be added when resuming with "
            "ckpt_path=<run dir>)"
        )

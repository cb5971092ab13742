"""Wall-clock timing of training, written to `<run dir>/timing.json` (used by `make bench`)."""

from __future__ import annotations

import itertools
import json
import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class EpochTimer(L.Callback):
    """Seconds per epoch as a user waits for it (`epoch_s`: from the start of one training
    epoch to the start of the next, so validation, pictures, checkpoints and logging
    included; one figure fewer than epochs), seconds of training alone per epoch
    (`train_s_per_epoch`: first batch start to last batch end), the wall time of the first
    step, and the process's peak resident memory."""

    def __init__(self) -> None:
        self.epoch_start = 0.0
        self.last_batch_end = 0.0
        self.first_step_at: float | None = None
        self.train_s: list[float] = []
        self.epoch_starts: list[float] = []
        self.images = 0  # in the last epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start = time.time()
        self.epoch_starts.append(self.epoch_start)
        self.images = 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if batch_idx == trainer.num_training_batches - 1 and pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # the epoch ends when the GPU has done its work
        self.last_batch_end = time.time()
        self.images += len(batch.images)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_s.append(self.last_batch_end - self.epoch_start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        payload = {
            "train_s_per_epoch": self.train_s,
            "epoch_s": [b - a for a, b in itertools.pairwise(self.epoch_starts)],
            "first_step_unix_time": self.first_step_at,
            "peak_rss_mb": peak_kb / 1024,
            "steps_per_epoch": trainer.num_training_batches,
            "images_per_epoch": self.images,
        }
        Path(trainer.default_root_dir, "timing.json").write_text(json.dumps(payload, indent=2))

"""Carry the random number generators' state through a checkpoint, so a resumed run draws
the same noise (reparameterization samples, dynamic binarization) as one never stopped.

Lightning restores weights, optimizer and counters but not the generators; without this a
resumed run would replay the noise of the run's first steps. The state is saved with each
checkpoint and put back when training starts, after the sanity check (which draws noise of
its own), i.e. just where the stopped run would have gone on. Batch order needs nothing:
it is seeded per epoch by the data module. Only torch's generators are used here (numpy
and Python's `random` draw nothing in training), and all of them are uint8 tensors, which
a weights-only checkpoint holds.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class RNGState(L.Callback):
    """Saves torch's CPU (and CUDA) generator states; restores them at the start of training."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending["cpu"])
        cuda = self._pending.get("cuda")
        if (
            cuda is not None
            and torch.cuda.is_available()
            and len(cuda) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(cuda)
        self._pending = None

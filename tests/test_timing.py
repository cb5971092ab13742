"""The EpochTimer callback behind `make bench`: real seconds, counts and memory."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import ComposeFn
from vae_lab.train import train


def test_epoch_timer_writes_what_the_benchmark_reads(compose_cfg: ComposeFn) -> None:
    cfg = compose_cfg("+callbacks.epoch_timer._target_=vae_lab.callbacks.timing.EpochTimer")
    started = time.time()
    summary = train(cfg)
    timing = json.loads((Path(cfg.paths.output_dir) / "timing.json").read_text())
    assert len(timing["train_s_per_epoch"]) == cfg.trainer.max_epochs == summary["epochs"]
    assert all(0 < s < time.time() - started for s in timing["train_s_per_epoch"])
    assert started < timing["first_step_unix_time"] < time.time()
    assert timing["steps_per_epoch"] == cfg.trainer.limit_train_batches
    assert timing["images_per_epoch"] == cfg.trainer.limit_train_batches * cfg.data.batch_size
    assert timing["peak_rss_mb"] > 100  # torch alone takes more

"""The EpochTimer callback behind `make bench`: real seconds, counts and memory, as the
session's trained run (which has the timer among its callbacks) wrote them."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf


def test_epoch_timer_writes_what_the_benchmark_reads(trained_run: Path) -> None:
    timing = json.loads((trained_run / "timing.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    cfg = OmegaConf.load(trained_run / "config.yaml")
    assert "EpochTimer" in cfg.callbacks.epoch_timer._target_
    assert len(timing["train_s_per_epoch"]) == cfg.trainer.max_epochs == metrics["epochs"]
    # real seconds: within the run, from its config.yaml (written as training starts) to
    # its metrics.json (written at the end)
    started = (trained_run / "config.yaml").stat().st_mtime
    ended = (trained_run / "metrics.json").stat().st_mtime
    assert started < timing["first_step_unix_time"] < ended
    assert all(0 < s < ended - started for s in timing["train_s_per_epoch"])
    assert timing["steps_per_epoch"] == cfg.trainer.limit_train_batches
    assert timing["images_per_epoch"] == cfg.trainer.limit_train_batches * cfg.data.batch_size
    assert timing["peak_rss_mb"] > 100  # torch alone takes more

"""A published-protocol run killed mid-way resumes with its warm-up, early-stopping count and
best checkpoint as they were: the recipe (`experiment=published_nll`) on a short schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import compose_tiny, run_cli, tiny_overrides
from vae_lab.train import train

pytestmark = [pytest.mark.slow, pytest.mark.cli]  # a minute: two runs, one in a killed process

WARMUP, PATIENCE = 2, 5  # the count runs for 4 epochs before the stop: time to kill it
SHORT_RECIPE = (
    "experiment=published_nll",
    "data.val_size=50",
    "data.batch_size=32",
    "latent_dim=4",
    "eval.k=3",
    "trainer.limit_test_batches=1",
    f"kl_schedule.warmup_epochs={WARMUP}",
    f"callbacks.early_stopping.patience={PATIENCE}",
    # no epoch beats the best by 1e9 nats: once the warm-up is over the count rises by one
    # per epoch, so the run stops at a known epoch, and the count is state worth losing
    "callbacks.early_stopping.min_delta=1e9",
    "trainer.max_epochs=40",
    "callbacks.image_grids=null",
    "callbacks.latent_pictures=null",
    "callbacks.embedding_projector=null",
)
# Epoch e trains at KL weight (e + 1) / WARMUP: epochs 0 .. WARMUP - 2 are below the full
# weight and not counted; from epoch WARMUP - 1 on each adds one to the count, and the run
# stops in the epoch where the count reaches PATIENCE (0-based index below).
STOPS_AFTER = WARMUP - 1 + PATIENCE - 1


def _early_stopping_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    (state,) = (v for k, v in checkpoint["callbacks"].items() if "WarmupEarlyStopping" in k)
    return state


def _kill_when_counting(args: list[str], cwd: Path, last: Path) -> dict[str, Any]:
    """Start the run, SIGKILL it once last.ckpt holds a running early-stopping count."""
    log_path = cwd / "killed.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vae_lab.train", *args], cwd=cwd, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if last.exists() and _early_stopping_state(torch.load(last))["wait_count"] >= 1:
                break  # last.ckpt is written by rename: whole whenever it exists
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log_path.read_text()
    return torch.load(last)


def _kl_weights(run: Path) -> dict[int, float]:
    """train/kl_weight by step, from a run directory's event files or one of them."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    if "train/kl_weight" not in events.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in events.Scalars("train/kl_weight")}


def _best(run: Path) -> tuple[str, dict[str, torch.Tensor]]:
    (path,) = (run / "checkpoints").glob("best-*.ckpt")
    return path.name, torch.load(path)["state_dict"]


def test_a_killed_recipe_run_resumes_its_warm_up_count_and_best_checkpoint(
    tiny_data: Path, tmp_path: Path
) -> None:
    reference = train(compose_tiny(tiny_data, tmp_path / "reference", *SHORT_RECIPE))
    assert reference["epochs"] == STOPS_AFTER + 1  # early stopping ended it, not max_epochs

    run = tmp_path / "run"
    args = [*tiny_overrides(tiny_data, run), *SHORT_RECIPE]
    killed = _kill_when_counting(args, tmp_path, run / "checkpoints" / "last.ckpt")
    assert killed["epoch"] < STOPS_AFTER  # killed before it would have stopped
    assert not (run / "metrics.json").exists()

    result = run_cli([*args, f"ckpt_path={run}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Resumed, not restarted (a seeded restart would reach the same numbers): it says so,
    # and the second process logs steps from the killed one's checkpoint on, not from 0.
    last = run / "checkpoints" / "last.ckpt"
    at = f"(epoch {killed['epoch']}, step {killed['global_step']})"
    assert f"Resuming {last} {at}" in result.stdout + result.stderr
    (first, second) = sorted(  # events.out.tfevents.<start time>.<host>.<pid>.<n>
        (p for p in run.glob("events.out.tfevents.*") if _kl_weights(p)),
        key=lambda p: int(p.name.split(".")[3]),
    )
    assert min(_kl_weights(second)) >= killed["global_step"] > min(_kl_weights(first)) == 0
    summary = json.loads((run / "metrics.json").read_text())
    keys = ("epochs", "global_step", "val", "test")
    assert {k: summary[k] for k in keys} == {k: reference[k] for k in keys}
    # the warm-up continued where it was: the same KL weight at every step
    assert _kl_weights(run) == _kl_weights(tmp_path / "reference")
    # the best checkpoint is the reference's, file name and weights
    name, weights = _best(run)
    ref_name, ref_weights = _best(tmp_path / "reference")
    assert name == ref_name
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)

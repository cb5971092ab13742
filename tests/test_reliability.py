"""Reliability and safety: resume after SIGKILL, stop on divergence, determinism, atomic
checkpoint writes, no code named by a checkpoint's config run. (Pickled code in a checkpoint,
for every command: test_checkpoint_trust.py; no eval or exec: ruff's S307 and S102.)"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ComposeFn, compose_tiny, run_cli, tiny_overrides
from vae_lab.cli.errors import DIVERGED_EXIT, UserError
from vae_lab.run import checkpoints
from vae_lab.run.checkpoint_io import AtomicCheckpointIO
from vae_lab.train import train

STEPS_PER_EPOCH = 4  # tiny_overrides: trainer.limit_train_batches=4


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _results(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: summary[key] for key in ("val", "test", "epochs", "global_step")}


@pytest.mark.cli
@pytest.mark.slow  # trains the run twice, once in a process it kills
def test_killed_run_resumes_where_it_stopped(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*tiny_overrides(tiny_data, run), "trainer.max_epochs=1000"]  # never ends by itself
    last = run / "checkpoints" / "last.ckpt"
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vae_lab.train", *args], cwd=tmp_path, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 120
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-epoch, right after its first checkpoint
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert not (run / "metrics.json").exists()
    killed_at = torch.load(last, weights_only=True)  # whole: written by rename
    epochs = killed_at["epoch"] + 2  # the checkpoint's epoch (0-based), and one more

    result = run_cli([*args, f"trainer.max_epochs={epochs}", f"ckpt_path={run}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Resuming {last} (epoch {killed_at['epoch']}, step {killed_at['global_step']})" in (
        result.stdout + result.stderr
    )
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["status"] == "completed"
    assert (resumed["epochs"], resumed["global_step"]) == (epochs, epochs * STEPS_PER_EPOCH)

    # Number for number what a run that was never stopped gives: weights, optimizer state,
    # counters, batch order and noise all continued.
    never_stopped = train(
        compose_tiny(tiny_data, tmp_path / "reference", f"trainer.max_epochs={epochs}")
    )
    assert _results(resumed) == _results(never_stopped)
    # One TensorBoard run whose training curve continues: every step once (a step the
    # killed process logged at the checkpoint is logged again with the same value).
    steps = {}
    for step, value in _scalars(run, "train/loss"):
        assert steps.setdefault(step, value) == value
    assert sorted(steps) == list(range(epochs * STEPS_PER_EPOCH))
    assert steps == dict(_scalars(tmp_path / "reference", "train/loss"))


def _diverging(tiny_data: Path, run: Path) -> list[str]:
    """A real blow-up: the learning rate grows a million-fold after the first epoch."""
    return [
        *tiny_overrides(tiny_data, run),
        "trainer.max_epochs=4",
        "+scheduler._target_=torch.optim.lr_scheduler.ExponentialLR",
        "+scheduler._partial_=true",
        "+scheduler.gamma=1e6",
    ]


@pytest.mark.cli
def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(
    tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = run_cli(_diverging(tiny_data, run), cwd=tmp_path)
    assert result.returncode == DIVERGED_EXIT, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "error: training diverged: the training loss is nan at step" in line
    assert f"the last good checkpoint is kept: {run / 'checkpoints' / 'last.ckpt'}" in line
    assert "optimizer.lr" in line and "trainer.gradient_clip_val=1.0" in line

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["error"] in line
    assert "val" not in metrics and "test" not in metrics  # no numbers passed off as results
    assert metrics["checkpoint"] == "checkpoints/last.ckpt"
    kept = checkpoints.load(run)  # the epoch before the blow-up, every weight finite
    assert kept["epoch"] == 0 and metrics["global_step"] > kept["global_step"]
    assert all(bool(torch.isfinite(w).all()) for w in kept["state_dict"].values())
    assert all(math.isfinite(v) for _, v in _scalars(run, "train/loss"))


@pytest.mark.slow  # three runs of its own
def test_same_seed_same_numbers(tiny_data: Path, tmp_path: Path) -> None:
    def run(name: str, *overrides: str) -> dict[str, Any]:
        # The final metrics depend on every step of training that came before them.
        cfg = compose_tiny(
            tiny_data,
            tmp_path / name,
            "trainer.deterministic=true",
            "trainer.max_epochs=1",
            "callbacks=none",
            *overrides,
        )
        return _results(train(cfg))

    first, second = run("first"), run("second")
    assert first == second
    assert run("other_seed", "seed=7") != first  # the comparison does see a difference


def test_checkpoint_write_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(3)}, target)
    with pytest.raises(Exception, match="lambda"):  # fails while writing the new file
        io.save_checkpoint({"w": torch.zeros(3), "unpicklable": lambda: 0}, target)
    assert torch.load(target, weights_only=True)["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary left


@pytest.mark.cli
def test_importing_the_writer_leaves_the_umask_alone_and_files_follow_it(tmp_path: Path) -> None:
    # In a fresh process with umask 027, every os.umask call is recorded from the import on.
    script = (
        "import os, sys\n"
        "calls, real = [], os.umask\n"
        "real(0o027)\n"
        "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
        "import torch, vae_lab.run.checkpoint_io as io\n"
        "io.AtomicCheckpointIO().save_checkpoint({'w': torch.ones(1)}, sys.argv[1])\n"
        "print(oct(os.stat(sys.argv[1]).st_mode & 0o777), calls)\n"
    )
    target = tmp_path / "last.ckpt"
    result = subprocess.run(
        [sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=True
    )
    # 0666 & ~027 = 0640, the mode of any file written under umask 027; no call to os.umask
    assert result.stdout.split() == ["0o640", "[]"]


@pytest.mark.cli
def test_checkpoint_killed_while_writing_is_never_half_written(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    writer = (
        "import sys, torch; from vae_lab.run.checkpoint_io import AtomicCheckpointIO as IO\n"
        "io = IO(); i = 0\n"
        "while True:\n"
        "    i += 1; io.save_checkpoint({'i': i, 'w': torch.full((4_000_000,), float(i))}, "
        "sys.argv[1])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(target)])
    deadline = time.monotonic() + 60
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # several writes of 16 MB each: the kill lands in one of them
    proc.kill()
    proc.wait()
    saved = torch.load(target, weights_only=True)
    assert saved["i"] >= 1 and bool((saved["w"] == saved["i"]).all())


def test_trainer_writes_through_the_atomic_writer(compose_cfg: ComposeFn) -> None:
    trainer = instantiate(compose_cfg().trainer, logger=False, callbacks=[])
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_checkpoint_config_naming_foreign_code_is_refused(
    trained_run: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "target_ran"
    ckpt = checkpoints.load(trained_run)
    node = {"_target_": "builtins.open", "_args_": [str(marker), "w"]}
    ckpt["hyper_parameters"]["config"]["likelihood"] = node  # plain data: weights-only loads it
    # build_model checks again what `load` checked: the dict may have changed in between
    with pytest.raises(UserError, match=r"_target_ 'builtins\.open' at config\.likelihood;"):
        checkpoints.build_model(ckpt)
    assert not marker.exists()
    instantiate(OmegaConf.create(node))  # what building it unchecked would have done
    assert marker.exists()

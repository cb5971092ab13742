"""`python -m vae_lab.train` as a user runs it: bad input, a whole run, a multirun sweep."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, tiny_overrides

# (arguments, what stderr must say, exit status): one `error:` line each, exit 2. More
# bad inputs, checked in-process, are in test_errors.py.
BAD_INPUTS = [
    (["model=transformer"], "error: unknown option model=transformer; the options", 2),
    (["likelihood=poisson"], "error: unknown option likelihood=poisson; the options", 2),
    (["latent_dim=abc"], "could not be converted to Integer", 2),
    (["trainer.max_epoch=1"], "did you mean trainer.max_epochs?", 2),
    (["latent_dim=0"], "error: latent_dim must be a positive integer, got 0", 2),
    (["latent_dim=-4"], "error: latent_dim must be a positive integer, got -4", 2),
    (["optimizer.lr=-0.001"], "error: optimizer.lr must be a positive number", 2),
    (["optimizer=sgd", "optimizer.lr=0"], "error: optimizer.lr must be a positive number", 2),
    (["data.batch_size=0"], "error: data.batch_size must be a positive number", 2),
    (["data.batch_size=-8"], "error: data.batch_size must be a positive number", 2),
]


def _tiny(tiny_data: Path, out: Path, *extra: str) -> list[str]:
    return [*tiny_overrides(tiny_data, out), *extra]


def _one_short_epoch(tiny_data: Path, batches: int) -> list[str]:
    """Tiny data and one short epoch, keeping Hydra's own output directories."""
    return [
        f"data.root={tiny_data}",
        "data.val_size=50",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={batches}",
    ]


def _assert_user_error(result: subprocess.CompletedProcess[str], message: str, code: int) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr


@pytest.mark.parametrize(("args", "message", "code"), BAD_INPUTS, ids=lambda v: str(v))
def test_bad_config_is_one_clear_error(
    tmp_path: Path, args: list[str], message: str, code: int
) -> None:
    result = run_cli(args, cwd=tmp_path)
    _assert_user_error(result, message, code)
    assert (
        not any((tmp_path / "outputs").rglob("*.ckpt")) if (tmp_path / "outputs").exists() else True
    )
    assert not list(tmp_path.rglob("metrics.json"))


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path: Path) -> None:
    result = run_cli([f"data.root={tmp_path / 'nowhere'}"], cwd=tmp_path)
    _assert_user_error(result, f"looked in: {tmp_path / 'nowhere'}", 2)
    assert "make data" in result.stderr
    assert not (tmp_path / "outputs" / "runs").exists() or not any(
        (tmp_path / "outputs" / "runs").rglob("*.hydra")
    )


@pytest.mark.parametrize("damage", ["truncate", "corrupt_gzip", "bad_magic"])
def test_broken_data_file_is_one_clear_error(tmp_path: Path, tiny_data: Path, damage: str) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    target = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(gzip.compress(raw[: len(raw) - 100]))
        message = "is truncated"
    elif damage == "corrupt_gzip":
        target.write_bytes(target.read_bytes()[:200])
        message = "corrupt or truncated"
    else:
        target.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
        message = "magic number"
    result = run_cli(_tiny(tiny_data, tmp_path / "run", f"data.root={root}"), cwd=tmp_path)
    _assert_user_error(result, message, 2)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_asked_for_without_one(tmp_path: Path, tiny_data: Path) -> None:
    result = run_cli(_tiny(tiny_data, tmp_path / "run", "trainer=gpu"), cwd=tmp_path)
    _assert_user_error(result, "use trainer=cpu", 2)


def test_a_whole_run_from_the_command_line(tmp_path: Path, tiny_data: Path) -> None:
    args = _one_short_epoch(tiny_data, batches=3)
    result = run_cli(["model=conv", "latent_dim=4", *args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    assert f"Run directory: {run_dir}" in result.stdout
    assert "tensorboard --logdir" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / "train.log").is_file()  # the job is named train (configs/hydra/default.yaml)
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_multirun_gives_each_job_its_own_directory(tmp_path: Path, tiny_data: Path) -> None:
    args = _one_short_epoch(tiny_data, batches=2)
    result = run_cli(["-m", "model=mlp,conv", "latent_dim=2", *args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2 and jobs[0].startswith("0_") and "model=mlp" in jobs[0]
    for job in jobs:
        assert json.loads((sweep_dir / job / "metrics.json").read_text())["status"] == "completed"


def test_runs_started_together_get_distinct_directories(tmp_path: Path) -> None:
    # Four real commands at once, each a one-job sweep that fails its value check (cheap,
    # and a sweep keeps its failed job's directory). The directory is named by nothing but
    # the token each command draws: without one, or with one shared, jobs would collide.
    args = ["-m", "latent_dim=0", "hydra.sweep.dir=outputs/same_${run_token:}"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vae_lab.train", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        proc.communicate(timeout=120)
    assert [proc.returncode for proc in procs] == [1] * 4  # each job failed, as it should
    sweeps = list((tmp_path / "outputs").glob("same_*"))
    assert len(sweeps) == 4
    for sweep in sweeps:
        (job,) = sweep.glob("0_*")
        assert json.loads((job / "metrics.json").read_text())["status"] == "failed"

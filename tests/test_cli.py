"""The commands as a user runs them, each a real process: bad input, a whole run, a multirun
sweep, runs started together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.cli  # every test here starts `python -m vae_lab.<command>`

# A real process per command for the one-line report, exit status 2 and nothing left
# behind: (module, arguments, the whole of stderr). Every other bad input is checked in
# this process, through the same entry points, in test_errors.py.
AS_A_USER_TYPES_THEM = [
    ("train", ["model=transformer"], "error: unknown option model=transformer; the options of 'model' are: conv, conv_hvae, gated_mlp, hvae, mlp"),
    ("train", ["latent_dim=0"], "error: latent_dim must be a positive integer, got 0"),
    ("train", ["data.root={tmp}/nowhere"], "error: Fashion-MNIST IDX files not found (looked in: {tmp}/nowhere). Run `make data`"),
    ("evaluate", ["ckpt_path={tmp}/missing.ckpt"], "error: checkpoint {tmp}/missing.ckpt does not exist; pass the path of a .ckpt file"),
    ("classifier", ["epochs=0"], "error: epochs must be a positive integer, got 0; for example epochs=5"),
    ("report", ["{tmp}/nowhere"], "error: {tmp}/nowhere is not a directory"),
]  # fmt: skip


def _one_short_epoch(tiny_data: Path, batches: int) -> list[str]:
    """Tiny data and one short epoch, keeping Hydra's own output directories."""
    return [
        f"data.root={tiny_data}",
        "data.val_size=50",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={batches}",
    ]


@pytest.mark.parametrize(
    ("command", "args", "says"),
    AS_A_USER_TYPES_THEM,
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_a_bad_input_is_one_line_from_a_real_process(
    tmp_path: Path, command: str, args: list[str], says: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", f"vae_lab.{command}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(says.replace("{tmp}", str(tmp_path))), line
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no results, logs or configs


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

"""Faults of the disk under a run, made for real: a full file system (a small tmpfs), a
directory turned read-only (a read-only bind mount over it), a process killed while it
writes a checkpoint. Each run stops with one `error:` line and exit status 2, keeps its
last good checkpoint loadable, and resumes to the end once the cause is gone.

Mounting needs root and `mount`; without them these tests are skipped.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import vae_lab
from tests.conftest import run_cli, tiny_overrides
from vae_lab.cli.errors import USER_ERROR_EXIT
from vae_lab.run import checkpoints, faults
from vae_lab.run.checkpoint_io import AtomicCheckpointIO, is_leftover
from vae_lab.run.outputs import write_json_atomic

STEPS_PER_EPOCH = 4  # tiny_overrides: trainer.limit_train_batches=4
EPOCHS = 3


class Mounts:
    """File systems mounted by a test, all unmounted when it ends, passed or not."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def tmpfs(self, path: Path, size: int) -> Path:
        """A tmpfs of `size` bytes (whole KiB) at `path`."""
        path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={-(-size // 1024)}k", "tmpfs", str(path))
        self.mounted.append(path)
        return path

    def grow(self, path: Path, size: int) -> None:
        _mount("-o", f"remount,size={-(-size // 1024)}k", str(path))

    def read_only(self, path: Path) -> None:
        """Make `path` read-only for every new open, root's included: a bind mount of it
        over itself, remounted read-only."""
        _mount("--bind", str(path), str(path))
        self.mounted.append(path)
        _mount("-o", "remount,bind,ro", str(path))

    def release(self, path: Path) -> None:
        """Unmount the last mount at `path`."""
        del self.mounted[len(self.mounted) - 1 - self.mounted[::-1].index(path)]
        _umount(path)

    def release_all(self) -> None:
        while self.mounted:
            _umount(self.mounted.pop())


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True)  # busy: detach it now


@pytest.fixture(scope="session")
def mountable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless this process may mount file systems (root, `mount`, a kernel that lets it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind mount needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount/umount are not installed")
    probe = tmp_path_factory.mktemp("probe")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    _umount(probe)


@pytest.fixture
def mounts(mountable: None) -> Iterator[Mounts]:
    held = Mounts()
    try:
        yield held
    finally:
        held.release_all()


@pytest.fixture(autouse=True)
def same_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocesses import the vae_lab under test: a relative PYTHONPATH (`PYTHONPATH=src`)
    would not reach it from their working directory, and another install would answer."""
    src = str(Path(vae_lab.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", src)


def _one_error_line(returncode: int | None, stdout: str, stderr: str) -> str:
    """The single `error:` line a run that met a fault ends with; no traceback anywhere."""
    assert returncode == USER_ERROR_EXIT, stderr
    assert "Traceback" not in stdout + stderr and "Logging error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    print(lines[0])  # shown with -rP: the messages docs/faults.md quotes
    return lines[0]


def _resume_args(line: str) -> list[str]:
    """The arguments of the resume command the error line gives, to run it as written."""
    command = shlex.split(line.split("then resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "vae_lab.train"], line
    return command[3:]


def _leftovers(run: Path) -> list[str]:
    return [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def _completed(run: Path, epochs: int = EPOCHS) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert (metrics["epochs"], metrics["global_step"]) == (epochs, epochs * STEPS_PER_EPOCH)
    assert checkpoints.load(run)["epoch"] == epochs - 1


def _wait_for(
    ready: Callable[[], bool], proc: subprocess.Popen[Any], timeout: float, poll: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the moment the test waits for"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(poll)


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vae_lab.train", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _fault_while_paused(
    args: list[str], cwd: Path, ready: Callable[[], bool], fault: Callable[[], None]
) -> tuple[int | None, str, str]:
    """Start a training run, wait until `ready()`, and hold it still (SIGSTOP) while `fault()`
    changes its world; then let it run to its end. Its exit status and output."""
    proc = _start(args, cwd)
    try:
        _wait_for(ready, proc, timeout=300)
        os.kill(proc.pid, signal.SIGSTOP)
        fault()
        os.kill(proc.pid, signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, stdout, stderr


# The writers alone, on a real full or read-only file system: fast.


def test_checkpoint_on_a_full_disk_is_an_oserror_naming_it_and_the_old_one_stays(
    mounts: Mounts, tmp_path: Path
) -> None:
    disk = mounts.tmpfs(tmp_path / "small", size=3 * 2**20)
    target = disk / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(2**18)}, target)  # 1 MiB
    with pytest.raises(OSError) as raised:  # 2 MiB more while the 1 MiB one is kept
        io.save_checkpoint({"w": torch.zeros(2**19)}, target)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert bool((torch.load(target, weights_only=True)["w"] == 1).all())
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary left


def test_writes_into_a_read_only_directory_name_the_file_and_leave_the_old_one(
    mounts: Mounts, tmp_path: Path
) -> None:
    target, metrics = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "metrics.json"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, target)
    write_json_atomic(metrics, {"status": "old"})
    mounts.read_only(tmp_path)
    with pytest.raises(OSError) as raised:
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3)}, target)
    assert (raised.value.errno, raised.value.filename) == (errno.EROFS, str(target))
    with pytest.raises(OSError) as raised:
        write_json_atomic(metrics, {"status": "completed"})
    assert (raised.value.errno, raised.value.filename) == (errno.EROFS, str(metrics))
    assert torch.load(target, weights_only=True)["w"].tolist() == [1.0, 1.0, 1.0]
    assert json.loads(metrics.read_text()) == {"status": "old"}


def test_a_log_file_on_a_full_disk_is_kept_quiet_and_raised_once_asked(
    mounts: Mounts,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = mounts.tmpfs(tmp_path / "logs", size=64 * 1024)
    handler = logging.FileHandler(disk / "train.log")
    logger = logging.getLogger()
    monkeypatch.setattr(logger, "handlers", [handler])  # as Hydra leaves it: this log alone
    try:
        with faults.watched():
            (disk / "filler").write_bytes(b"\0" * (64 * 1024 - 1))  # takes every page
            logging.getLogger("vae_lab.test").warning("a line the full disk refuses")
            with pytest.raises(OSError) as raised:
                faults.raise_if_met()
    finally:
        (disk / "filler").unlink(missing_ok=True)  # room for the line the handler still holds
        handler.close()
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(disk / "train.log"))
    assert "Logging error" not in capsys.readouterr().err  # logging's own report, per line


# Real runs: `python -m vae_lab.train` in a subprocess, several epochs each.


@pytest.mark.slow
def test_full_disk_stops_in_one_line_keeps_the_last_checkpoint_and_resumes(
    mounts: Mounts, tiny_data: Path, trained_run: Path, tmp_path: Path
) -> None:
    # Epoch 0 writes best-epoch000.ckpt, then last.ckpt: two checkpoints, and under 1 MB of
    # events, pictures, logs. Epoch 1's first checkpoint would be a third: 2.5 hold the
    # first epoch's, not the second's.
    one = (trained_run / "checkpoints" / "last.ckpt").stat().st_size  # this model's
    disk = mounts.tmpfs(tmp_path / "small", size=int(2.5 * one))
    run = disk / "run"
    args = [
        *tiny_overrides(tiny_data, run),
        "latent_dim=4",
        f"trainer.max_epochs={EPOCHS}",
        f"hydra.run.dir={run}",  # the log, .hydra/ and config.yaml on the full disk too
    ]
    result = run_cli(args, cwd=tmp_path)
    line = _one_error_line(result.returncode, result.stdout, result.stderr)
    assert line.startswith(f"error: the disk is full: cannot write {run / 'checkpoints'}/")
    assert (
        "(No space left on device); the run stopped and its last good checkpoint is kept: " in line
    )
    assert f"{run / 'checkpoints' / 'last.ckpt'}. To go on, free some space on that disk" in line
    kept = checkpoints.load(run)  # whole, from the last epoch whose checkpoints were written
    assert (kept["epoch"], kept["global_step"]) == (0, STEPS_PER_EPOCH)
    assert not (run / "metrics.json").exists() and _leftovers(run) == []

    mounts.grow(disk, 8 * one)  # the cause gone
    resumed = run_cli(_resume_args(line), cwd=tmp_path)  # the command the line gives
    assert resumed.returncode == 0, resumed.stderr
    _completed(run)


@pytest.mark.slow
def test_directory_turned_read_only_stops_in_one_line_and_resumes(
    mounts: Mounts, tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [
        *tiny_overrides(tiny_data, run),
        "latent_dim=4",
        f"trainer.max_epochs={EPOCHS}",
        f"hydra.run.dir={run}",
    ]
    ready = (run / "checkpoints" / "last.ckpt").exists
    outcome = _fault_while_paused(args, tmp_path, ready, lambda: mounts.read_only(run))
    line = _one_error_line(*outcome)  # held still while its directory turned read-only
    assert line.startswith(f"error: the file system is read-only: cannot write {run}")
    assert "(Read-only file system); the run stopped and its last good checkpoint is kept" in line
    assert "To go on, make that file system writable again, then resume with: " in line
    kept = checkpoints.load(run)
    assert (kept["epoch"], kept["global_step"]) == (0, STEPS_PER_EPOCH)
    assert not (run / "metrics.json").exists()

    mounts.release(run)  # writable again
    resumed = run_cli(_resume_args(line), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _completed(run)
    assert _leftovers(run) == []


@pytest.mark.slow
def test_log_file_on_a_full_disk_stops_the_run_in_one_line(
    mounts: Mounts, tiny_data: Path, tmp_path: Path
) -> None:
    logs = mounts.tmpfs(tmp_path / "logs", size=1024 * 1024)
    job, run = logs / "job", tmp_path / "run"
    args = [*tiny_overrides(tiny_data, run), "latent_dim=4", f"hydra.run.dir={job}"]

    def fill() -> None:
        with (logs / "filler").open("wb") as filler, pytest.raises(OSError):
            while True:  # until the disk is full
                filler.write(b"\0" * 65536)
                filler.flush()

    # Hydra opens train.log, then writes .hydra/; the first line comes with the trainer.
    ready = (job / ".hydra" / "overrides.yaml").exists
    line = _one_error_line(*_fault_while_paused(args, tmp_path, ready, fill))
    assert line == (
        f"error: the disk is full: cannot write {job / 'train.log'} (No space left on device); "
        "the run stopped and no checkpoint had been written yet. To go on, free some space on "
        "that disk, then run the command again"
    )
    assert not (run / "metrics.json").exists()

    (logs / "filler").unlink()
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    _completed(run, epochs=2)  # tiny_overrides' two


@pytest.mark.slow
@pytest.mark.parametrize("writing", ["best", "last"])
def test_killed_while_writing_a_checkpoint_keeps_the_previous_and_resumes(
    tiny_data: Path, tmp_path: Path, writing: str
) -> None:
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    args = [
        *tiny_overrides(tiny_data, run),
        f"trainer.max_epochs={EPOCHS}",
        # ~140 MB checkpoints (weights and Adam's two moments): a write takes 0.2-0.7 s
        # here, a wide window for the kill to land in
        "model.encoder.hidden_sizes=[2048,2048]",
        "model.decoder.hidden_sizes=[2048,2048]",
        "eval.k=0",
    ]

    def temporary() -> list[Path]:
        """A write of `writing` after epoch 0's checkpoints (best: the next epoch that
        improves; last: epoch 1's), once it has begun."""
        if not (ckpts / "last.ckpt").exists():
            return []
        return [
            p
            for p in ckpts.glob(f".{writing}*.tmp")
            if is_leftover(p) and not p.name.startswith(".best-epoch000.")
        ]

    proc = _start(args, tmp_path)
    try:
        _wait_for(lambda: bool(temporary()), proc, timeout=300, poll=0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (partial,) = temporary()
    assert partial.exists()  # killed inside the write: its temporary file is all it left
    # the epoch whose checkpoint was being written (last: epoch 1); last.ckpt holds the one
    # before it
    best = re.match(r"\.best-epoch(\d+)\.", partial.name)
    epoch = int(best.group(1)) if best else 1
    complete = sorted(ckpts.glob("*.ckpt"))
    assert ckpts / "last.ckpt" in complete
    for path in complete:  # never truncated: each loads, and is of a finished epoch
        assert checkpoints.load(path)["epoch"] < epoch
    kept = checkpoints.load(run)
    assert (kept["epoch"], kept["global_step"]) == (epoch - 1, epoch * STEPS_PER_EPOCH)
    assert not (run / "metrics.json").exists()

    resumed = run_cli([*args, f"ckpt_path={run}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Removed 1 partial checkpoint file(s) a stopped run left" in resumed.stdout
    _completed(run)
    assert _leftovers(run) == []

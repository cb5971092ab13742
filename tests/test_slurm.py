"""The cluster path on a real SLURM: a private single-node cluster that scripts/slurm.sh
brings up for the session (Debian's slurmctld, slurmd and munge, installed when missing)
and takes down at the end. Sweeps go through `hydra/launcher=slurm` exactly as a user's
would: sbatch, job arrays, srun tasks, `scontrol requeue`.

Where the cluster cannot come up (not root, no apt-get, no package mirror) these tests are
skipped with the script's reason; the resource rules are checked without a cluster.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ComposeFn, compose_tiny
from tests.test_sweeps import job_dirs, statuses, sweep_args, sweep_dirs
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.cli.errors import UserError
from vae_lab.report import make_report
from vae_lab.run.slurm import RESTART_VAR, device_count, gpus_per_node, resume_if_requeued
from vae_lab.train import train

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm.sh"
# One CPU and 1 GB per job: two jobs side by side on a 2-core machine.
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


# --- The request follows the trainer: no cluster needed ---------------------------------


def _launcher(*overrides: str) -> Mapping[str, object]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    return {k: launcher[k] for k in ("gpus_per_node", "tasks_per_node", "nodes")}


@pytest.mark.parametrize(
    ("overrides", "gpus", "tasks", "nodes"),
    [
        ([], 1, 1, 1),  # trainer=default: a GPU where there is one, so ask for one
        (["trainer=cpu"], 0, 1, 1),
        (["trainer=gpu"], 1, 1, 1),
        (["trainer=ddp", "trainer.devices=4"], 4, 4, 1),
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], 0, 2, 1),
        (["trainer=ddp", "trainer.devices=[0,1,2]", "trainer.num_nodes=2"], 3, 3, 2),
        (["trainer=gpu", "hydra.launcher.gpus_per_node=2"], 2, 1, 1),  # set by hand: kept
    ],
)
def test_the_slurm_request_follows_the_trainer(
    overrides: list[str], gpus: int, tasks: int, nodes: int
) -> None:
    assert _launcher(*overrides) == {"gpus_per_node": gpus, "tasks_per_node": tasks, "nodes": nodes}


@pytest.mark.parametrize("devices", ["auto", -1, "0"])
def test_devices_without_a_count_are_refused(devices: object) -> None:
    with pytest.raises(UserError, match=r"trainer.devices must be a number.*trainer.devices=4"):
        gpus_per_node("gpu", devices)
    assert device_count("0,1") == 2 and device_count(3) == 3


def test_only_a_restarted_job_with_a_checkpoint_of_its_own_resumes(
    compose_cfg: ComposeFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cases = [  # (SLURM_RESTART_COUNT, last.ckpt there, ckpt_path given) -> ckpt_path
        (None, True, None, None),  # a first start, even in a directory with checkpoints
        ("0", True, None, None),
        ("1", False, None, None),  # stopped before its first checkpoint: from the start
        ("1", True, None, str(last)),
        ("2", True, "/elsewhere/last.ckpt", "/elsewhere/last.ckpt"),  # given: kept
    ]
    base = compose_cfg()
    for restarts, exists, given, expected in cases:
        if restarts is None:
            monkeypatch.delenv(RESTART_VAR, raising=False)
        else:
            monkeypatch.setenv(RESTART_VAR, restarts)
        last.parent.mkdir(parents=True, exist_ok=True)
        last.unlink(missing_ok=True)
        if exists:
            last.write_bytes(b"")
        cfg = base.copy()
        cfg.ckpt_path = given
        resume_if_requeued(cfg)
        assert cfg.ckpt_path == expected, (restarts, exists, given)


# --- The private cluster -----------------------------------------------------------------


def _adopt_orphans(on: bool) -> None:
    """Make this process the parent of the daemons the script starts (they detach), so
    they can be reaped when they stop instead of lingering as zombies under a PID 1 that
    does not reap, as in many containers."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(scope="session")
def slurm() -> Iterator[dict[str, str]]:
    """The environment for commands that use the cluster (SLURM_CONF points at it)."""
    # Not under pytest's temporary directory: munged, running as the munge user, must be
    # able to reach its socket, and pytest's directories are private to root.
    state = Path(tempfile.mkdtemp(prefix="vae_lab_slurm_"))
    _adopt_orphans(True)
    up = subprocess.run(
        ["bash", str(SCRIPT), "up", str(state)], capture_output=True, text=True, timeout=600
    )
    try:
        if up.returncode != 0:
            reason = (up.stderr.strip().splitlines() or ["no reason given"])[-1]
            pytest.skip(f"no private SLURM cluster here: {reason}")
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPT), "down", str(state)], capture_output=True, timeout=120)
        _reap()
        _adopt_orphans(False)
        shutil.rmtree(state, ignore_errors=True)


def _command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "vae_lab.train", *args]


def _run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _sbatch_options(sweep: Path) -> set[str]:
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    return {
        line.split()[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH")
    }


# --- DDP over two SLURM tasks -------------------------------------------------------------


@pytest.mark.slurm
def test_ddp_over_two_slurm_tasks_reduces_over_every_image(
    slurm: dict[str, str], tiny_data: Path, tmp_path: Path
) -> None:
    # 51 validation images: rank 0 holds 26, rank 1 holds 25, so a mean of the two ranks'
    # means (not weighted by their counts) or a padded shard would show in the numbers.
    args = sweep_args(
        tiny_data,
        *LAUNCHER,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=null",
        "data.val_size=51",
    )
    result = _run(args, tmp_path, slurm)
    assert result.returncode == 0, result.stderr
    (sweep,) = sweep_dirs(tmp_path)
    # Two tasks and no GPU, from trainer.devices and trainer.accelerator alone.
    assert {"--ntasks-per-node=2", "--gpus-per-node=0", "--nodes=1"} <= _sbatch_options(sweep)
    (job,) = job_dirs(sweep)
    rank_1 = next(sweep.glob(".submitit/*/*_1_log.out")).read_text()  # SLURM's task 1
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in rank_1
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    # 249 training images, 124 per rank, batches of 32: 4 steps per epoch, not 8.
    assert metrics["global_step"] == 2 * 4

    # The same checkpoint evaluated by one process over the same 51 images. The KL term is
    # closed-form (no sampling), so it must agree to float precision; the ELBO and the
    # reconstruction hold one draw of z per image and differ by Monte Carlo noise.
    ckpt = job / metrics["checkpoint"]
    evaluate = [sys.executable, "-m", "vae_lab.evaluate", f"ckpt_path='{ckpt}'"]
    evaluate += ["eval.split=val", "eval.k=1"]
    single = subprocess.run(evaluate, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    (out,) = (tmp_path / "outputs" / "evaluate").glob("*/*/metrics.json")
    one_process = json.loads(out.read_text())
    assert one_process["images"] == 51
    assert metrics["val"]["kl"] == pytest.approx(one_process["kl"], rel=1e-5)


# --- A sweep with a failing job and a job SLURM requeues mid-training ---------------------

EPOCHS, STEPS = 6, 4  # trainer.max_epochs, trainer.limit_train_batches


class RequeuedSweep(NamedTuple):
    result: subprocess.CompletedProcess[str]
    sweep: Path
    requeued: str  # the SLURM job id of the array task that was requeued


def _requeue_after_first_checkpoint(cwd: Path, job: int, env: dict[str, str]) -> str:
    """Wait for the first checkpoint of job `job` of the sweep running in `cwd`, then
    requeue its array task; return the task's SLURM id (<array job>_<job>)."""
    deadline = time.monotonic() + 240
    while not (found := list(cwd.glob(f"outputs/multirun/*/*/{job}_*/checkpoints/last.ckpt"))):
        assert time.monotonic() < deadline, f"no checkpoint of job {job} within 240 s"
        time.sleep(0.05)
    sweep = found[0].parents[2]
    (task,) = [
        p.name for p in sweep.glob(f".submitit/*_{job}") if re.fullmatch(rf"\d+_{job}", p.name)
    ]
    requeue = subprocess.run(
        ["scontrol", "requeue", task], env=env, capture_output=True, text=True, timeout=60
    )
    assert requeue.returncode == 0, requeue.stderr
    return task


@pytest.fixture(scope="module")
def requeued_sweep(
    slurm: dict[str, str], tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> RequeuedSweep:
    """latent_dim=0,2,4 on SLURM: job 0 fails its value check, job 1 runs through, job 2
    is requeued by SLURM right after its first checkpoint, as a preemption would."""
    cwd = tmp_path_factory.mktemp("slurm_sweep")
    args = sweep_args(
        tiny_data,
        *LAUNCHER,
        "latent_dim=0,2,4",
        f"trainer.max_epochs={EPOCHS}",
        f"trainer.limit_train_batches={STEPS}",
        "trainer.log_every_n_steps=1",
    )
    with (cwd / "sweep.log").open("w+") as log:
        proc = subprocess.Popen(_command(args), cwd=cwd, env=slurm, stdout=log, stderr=log)
        try:
            requeued = _requeue_after_first_checkpoint(cwd, 2, slurm)
            proc.wait(timeout=300)
        finally:
            proc.kill()
        log.seek(0)
        output = log.read()
    (sweep,) = sweep_dirs(cwd)
    result = subprocess.CompletedProcess(args, proc.returncode, output, output)
    return RequeuedSweep(result, sweep, requeued)


@pytest.mark.slurm
def test_a_slurm_sweep_reports_every_job_and_its_failure(requeued_sweep: RequeuedSweep) -> None:
    result, sweep = requeued_sweep.result, requeued_sweep.sweep
    assert result.returncode == 1, result.stdout  # job 0 failed, the sweep went on
    assert re.search(r"error: job 0 \(\S*latent_dim=0\S*\) failed: latent_dim", result.stdout)
    assert statuses(sweep) == {"0": "failed", "1": "completed", "2": "completed"}
    # A CPU run asks SLURM for no GPU without being told; the three jobs were one array.
    assert {"--gpus-per-node=0", "--ntasks-per-node=1", "--array=0-2%3"} <= _sbatch_options(sweep)
    # submitit's warning at each sacct poll became one line that says what it means.
    assert result.stdout.count("sacct: this cluster keeps no job accounting") == 1
    assert "Bypassing sacct error" not in result.stdout

    report = make_report(sweep)
    assert report.swept == ["latent_dim"]
    rows = {r.overrides["latent_dim"]: r for r in report.runs}
    assert sorted(rows) == ["0", "2", "4"]
    assert [rows[k].status for k in ("0", "2", "4")] == ["failed", "completed", "completed"]
    assert "latent_dim must be a positive integer" in (sweep / "report.md").read_text()


def _scalars(events: Path, tag: str) -> dict[int, float]:
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in accumulator.Scalars(tag)}


@pytest.mark.slurm
def test_a_requeued_job_continues_from_its_checkpoint(
    requeued_sweep: RequeuedSweep, tiny_data: Path, tmp_path: Path
) -> None:
    sweep = requeued_sweep.sweep
    job = job_dirs(sweep)[2]
    attempts = next(sweep.glob(f".submitit/{requeued_sweep.requeued}/*_0_log.out")).read_text()
    assert attempts.count("Loading pickle") == 2  # SLURM started the job twice
    log = (job / "train.log").read_text()
    last = job / "checkpoints" / "last.ckpt"
    assert f"SLURM restart 1 of this job: continuing from {last}" in log
    resumed = re.search(r"Resuming \S+ \(epoch (\d+), step (\d+)\)", log)
    assert resumed is not None, log
    epoch, step = int(resumed[1]), int(resumed[2])
    assert epoch < EPOCHS - 1 and step == (epoch + 1) * STEPS  # stopped mid-training
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert (metrics["epochs"], metrics["global_step"]) == (EPOCHS, EPOCHS * STEPS)

    # Number for number what a run that was never stopped gives, trained here.
    overrides = [f"trainer.max_epochs={EPOCHS}", "latent_dim=4", "runtime.num_threads=1"]
    reference = train(compose_tiny(tiny_data, tmp_path / "reference", *overrides))
    for key in ("val", "test", "epochs", "global_step"):
        assert metrics[key] == reference[key], key

    # One TensorBoard run that continues: the first attempt's events start at step 0, the
    # second attempt's at the checkpoint's step; read together, every step once, with the
    # values of the run that was never stopped.
    by_file = {f: _scalars(f, "train/loss") for f in sorted(job.glob("events.out.tfevents.*"))}
    starts = sorted(min(steps) for steps in by_file.values() if steps)
    assert starts == [0, step]
    assert _scalars(job, "train/loss") == _scalars(tmp_path / "reference", "train/loss")
    assert sorted(_scalars(job, "train/loss")) == list(range(EPOCHS * STEPS))

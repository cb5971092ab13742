"""Sweeps as a user runs them: Hydra's launchers and sweepers for real, on tiny data.

(A sweep with a failing job is in test_report.py, which reads its directories.) Every sweep
here runs as `python -m vae_lab.train -m ...` in a process of its own (the `cli` tier); the
launcher's config and the threads each job gets are checked in the fast tier.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import run_cli
from tests.test_train import posterior_kl
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.report import make_report
from vae_lab.run.sweeps import threads_per_job
from vae_lab.train import cli


def sweep_args(tiny_data: Path, *extra: str) -> list[str]:
    """Tiny data, one short epoch, no progress bar; Hydra's own output directories."""
    return [
        "-m",
        f"data.root={tiny_data}",
        "data.val_size=50",
        "data.batch_size=32",
        "data.eval_batch_size=50",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0",
        *extra,
    ]


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "outputs" / "multirun").glob("*/*"))


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())


def statuses(sweep: Path) -> dict[str, str]:
    """{job number: status in its metrics.json}."""
    return {
        job.name.split("_")[0]: json.loads((job / "metrics.json").read_text())["status"]
        for job in job_dirs(sweep)
    }


@pytest.mark.parametrize(
    ("n_jobs", "cores", "threads"),
    [(-1, 2, 1), (1, 2, 2), (2, 8, 4), (3, 8, 2), (-2, 8, 1), (16, 2, 1)],
)
def test_parallel_jobs_share_the_cores(n_jobs: int, cores: int, threads: int) -> None:
    assert threads_per_job(n_jobs, cores) == threads


@pytest.mark.cli
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_2x2_sweep_and_its_report(tmp_path: Path, tiny_data: Path, launcher: str) -> None:
    extra = [] if launcher == "basic" else ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    args = sweep_args(tiny_data, "model=mlp,conv", "latent_dim=2,4", *extra)
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (sweep,) = sweep_dirs(tmp_path)
    assert len(job_dirs(sweep)) == 4
    assert statuses(sweep) == dict.fromkeys("0123", "completed")
    if launcher == "joblib":  # two jobs at a time: each gets half of the cores as threads
        expected = max(1, len(os.sched_getaffinity(0)) // 2)
        for job in job_dirs(sweep):
            assert OmegaConf.load(job / "config.yaml").runtime.num_threads == expected

    report = make_report(sweep)
    assert report.swept == ["model", "latent_dim"]
    assert [(r.overrides["model"], r.overrides["latent_dim"]) for r in report.runs] == [
        ("conv", "2"), ("conv", "4"), ("mlp", "2"), ("mlp", "4"),
    ]  # fmt: skip
    assert report.csv.read_text().count("\n") == 5  # header + four rows
    assert report.plot is not None and report.plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.cli
def test_running_a_sweep_again_never_overwrites_it(tmp_path: Path, tiny_data: Path) -> None:
    # Jobs that fail their value check are cheap and still write their directories.
    for _ in range(2):
        assert run_cli(sweep_args(tiny_data, "latent_dim=0"), cwd=tmp_path).returncode == 1
    first, second = sweep_dirs(tmp_path)
    assert first != second
    assert all(len(job_dirs(sweep)) == 1 for sweep in (first, second))


@pytest.mark.cli
def test_optuna_runs_two_trials_and_records_the_best(tmp_path: Path, tiny_data: Path) -> None:
    args = sweep_args(tiny_data, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (sweep,) = sweep_dirs(tmp_path)
    assert statuses(sweep) == {"0": "completed", "1": "completed"}
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {"optimizer.lr", "latent_dim", "beta"}
    # The sweeper maximized what each job returned: its validation ELBO.
    val_elbos = [
        json.loads((j / "metrics.json").read_text())["val"]["elbo"] for j in job_dirs(sweep)
    ]
    assert best.best_value == pytest.approx(max(val_elbos))
    assert make_report(sweep).swept == ["optimizer.lr", "latent_dim", "beta"]


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        (
            "latent_sweep",
            {f"model={m},latent_dim={d}" for m in ("mlp", "conv") for d in (2, 4, 8, 16, 32, 64)},
        ),
        (
            "likelihood_compare",
            {
                f"likelihood={lik},latent_dim={d}"
                for lik in (
                    "bernoulli",
                    "gaussian",
                    "gaussian_learned",
                    "continuous_bernoulli",
                    "logistic",
                )
                for d in (2, 8, 32)
            },
        ),
    ],
)
@pytest.mark.slow  # 36 and 15 jobs composed and refused, in process: 5 and 10 s
def test_a_named_sweep_starts_the_jobs_it_documents(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    experiment: str,
    expected: set[str],
) -> None:
    # Every job fails its value check at once (max_epochs=0): the sweep is cheap, and its
    # job directories still show which jobs the sweeper started.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["train", "-m", f"experiment={experiment}", "trainer.max_epochs=0"]
    )
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli()
    finally:
        GlobalHydra.instance().clear()
    assert exit_info.value.code == 1  # the sweep says that its jobs failed
    (sweep,) = sweep_dirs(tmp_path)
    jobs = {
        ",".join(str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")[:2])
        for job in job_dirs(sweep)
    }
    assert jobs == expected and len(job_dirs(sweep)) == len(expected)
    capsys.readouterr()


def test_the_slurm_launcher_config_builds_submitits_launcher() -> None:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        slurm = compose(
            "train",
            ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    assert isinstance(instantiate(slurm.hydra.launcher), SlurmLauncher)  # every key accepted


@pytest.mark.cli
def test_submitit_local_runs_the_jobs_and_records_a_failure(
    tmp_path: Path, tiny_data: Path
) -> None:
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]
    result = run_cli(sweep_args(tiny_data, *launcher, "latent_dim=0,2,4"), cwd=tmp_path)
    assert result.returncode == 1  # job 0 failed; the two others ran in their own processes
    assert re.search(r"error: job 0 \(\S*latent_dim=0\S*\) failed: latent_dim", result.stderr)
    (sweep,) = sweep_dirs(tmp_path)
    assert statuses(sweep) == {"0": "failed", "1": "completed", "2": "completed"}
    assert (sweep / ".submitit").is_dir()  # the jobs went through submitit, not in-process
    for job in job_dirs(sweep)[1:]:
        assert OmegaConf.load(job / "config.yaml").runtime.num_threads == 1


VAL_SIZE = 51  # odd: the ranks' validation shards are 26 and 25 images; test: 50 and 50


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> tuple[Path, dict]:
    """A 2-epoch run under `trainer=ddp` on 2 CPU processes: (run dir, its metrics.json)."""
    cwd = tmp_path_factory.mktemp("ddp")
    args = [
        *(a for a in sweep_args(tiny_data)[1:] if not a.startswith("data.val_size")),
        f"data.val_size={VAL_SIZE}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=null",
        "trainer.log_every_n_steps=1",
        "runtime.num_threads=1",
    ]
    result = run_cli(args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "outputs" / "runs").glob("*/*")
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def _single_process_kl(run_dir: Path, metrics: dict, tiny_data: Path, stage: str) -> float:
    """The best checkpoint's KL (no sampling) over all of `stage`'s images, in one process."""
    dm = FashionMNISTDataModule(root=str(tiny_data), val_size=VAL_SIZE)
    dm.setup("fit")
    return posterior_kl(run_dir / metrics["checkpoint"], dm.splits[stage][0])


@pytest.mark.cli  # two processes that each start torch, Lightning and gloo: about a minute
def test_ddp_with_two_cpu_processes(ddp_run: tuple[Path, dict], tiny_data: Path) -> None:
    run_dir, metrics = ddp_run
    assert (run_dir / "train_ddp_process_1.log").is_file()  # the second rank ran
    assert metrics["status"] == "completed"
    # 249 training images, 124 per rank, batches of 32: 4 steps per epoch, not 8.
    assert metrics["global_step"] == 2 * 4
    assert list(run_dir.glob("events.out.tfevents.*"))
    # The test metrics reduced over both ranks are those of one process over the 100 images
    expected = _single_process_kl(run_dir, metrics, tiny_data, "test")
    assert metrics["test"]["kl"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.cli
def test_ddp_validation_over_uneven_shards(ddp_run: tuple[Path, dict], tiny_data: Path) -> None:
    # Lightning 2.6 reduces an integer image count over the ranks (51 / 2 -> 25, a mean 51/50
    # too large, Lightning #21859); the module logs a float batch size, so it holds here too
    run_dir, metrics = ddp_run
    expected = _single_process_kl(run_dir, metrics, tiny_data, "val")
    assert metrics["val"]["kl"] == pytest.approx(expected, rel=1e-5)

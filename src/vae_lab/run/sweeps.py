"""What a job of a sweep needs beyond a single run: its share of the cores, the number it
hands back to the sweeper, and a record of its failure that does not stop the other jobs.

A single run reports a mistake as one `error: ...` line and exits. A job of a multirun must
not: `SystemExit` passes through Hydra's job runner and would end the whole sweep. Instead
the job writes `metrics.json` with `"status": "failed"` and the error, and raises `JobFailed`,
an ordinary exception that every launcher records as a failed job while the others go on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from vae_lab.cli.errors import TrainingDiverged, UserError

log = logging.getLogger(__name__)

METRIC_NAME = re.compile(r"^(val|test)/\w+$")


class JobFailed(CompactHydraException):
    """A job of a sweep failed; its `metrics.json` says why.

    A `CompactHydraException`, so that when a sweeper re-raises it after its batch, Hydra
    prints the one-line message rather than a traceback.
    """


def available_cores() -> int:
    """Cores this process may run on (a SLURM allocation or `taskset` narrows them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(n_jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of `n_jobs` parallel jobs (joblib's convention: -1 is one job per
    core, -2 all cores but one), so that together they use each core once."""
    cores = cores or available_cores()
    jobs = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // jobs)


def share_cores(cfg: DictConfig, launcher: Mapping[str, Any]) -> None:
    """Set `runtime.num_threads` for a job of a parallel launcher, unless the user set it.

    joblib runs `n_jobs` jobs at once on this machine: each gets cores // n_jobs threads.
    submitit (local or SLURM) gives each job `cpus_per_task` cores when that is set.
    Without this, every job would start one torch thread per core and jobs would fight.
    """
    if cfg.runtime.num_threads is not None:
        return
    if launcher.get("n_jobs") is not None:
        cfg.runtime.num_threads = threads_per_job(int(launcher["n_jobs"]))
    elif launcher.get("cpus_per_task"):
        cfg.runtime.num_threads = int(launcher["cpus_per_task"])


def check_metric_name(name: str) -> None:
    """`optimized_metric` must name a final metric, e.g. `val/elbo`; checked before training."""
    if not METRIC_NAME.match(str(name)):
        raise UserError(
            f"optimized_metric must be <val|test>/<metric>, got {name!r}; "
            "for example optimized_metric=val/elbo"
        )


def objective(summary: Mapping[str, Any], name: str) -> float:
    """The final metric `name` ("val/elbo") from a run's summary; NaN when it has none."""
    stage, metric = name.split("/", 1)
    return float(summary.get(stage, {}).get(metric, math.nan))


def check_objective(summary: Mapping[str, Any], name: str) -> float:
    """The value a sweeper gets; a job without a finite one failed (Optuna rejects NaN)."""
    value = objective(summary, name)
    if math.isfinite(value):
        return value
    stage = name.split("/", 1)[0]
    if stage in summary and name.split("/", 1)[1] not in summary[stage]:
        known = ", ".join(f"{stage}/{k}" for k in sorted(summary[stage]))
        raise JobFailed(f"optimized_metric={name} is not among the run's metrics ({known})")
    raise JobFailed(f"{name} is {value} (status: {summary.get('status')}) in {summary['run_dir']}")


def record_failure(run_dir: Path, job: str, error: Exception) -> JobFailed:
    """Write `metrics.json` with status "failed" for a job that raised, log why, and return
    the exception to raise in its place."""
    message = " ".join(str(error).split())
    if not isinstance(error, (UserError, JobFailed)):
        message = f"{type(error).__name__}: {message}"
        log.exception("job %s crashed", job)  # the traceback goes to the job's train.log
    if not isinstance(error, (JobFailed, TrainingDiverged)):  # these wrote their own
        # Written here rather than with vae_lab.run.outputs, which imports Lightning: a job that
        # fails its value check should not pay seconds of imports to say so.
        failed = {"status": "failed", "error": message, "run_dir": str(run_dir)}
        tmp = run_dir / ".metrics.json.tmp"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(failed, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, run_dir / "metrics.json")  # a reader never sees half a file
        except OSError as e:  # the full disk or read-only directory that stopped the job
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.error("error: job %s failed: %s", job, message)
            return JobFailed(f"error: job {job} failed: {message} (not recorded: {e})")
    log.error("error: job %s failed: %s", job, message)
    return JobFailed(f"error: job {job} failed: {message} (see {run_dir / 'metrics.json'})")


def run_sweep_job(cfg: DictConfig, train: Callable[[DictConfig], Mapping[str, Any]]) -> float:
    """Run one job of a multirun with `train`; return its `optimized_metric`, or raise
    `JobFailed` after writing why into its `metrics.json`."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    share_cores(cfg, hydra_cfg.launcher)
    try:
        check_metric_name(cfg.optimized_metric)
        return check_objective(train(cfg), cfg.optimized_metric)
    except Exception as e:
        job = f"{hydra_cfg.job.num} ({hydra_cfg.job.override_dirname or 'no overrides'})"
        raise record_failure(Path(hydra_cfg.runtime.output_dir), job, e) from e

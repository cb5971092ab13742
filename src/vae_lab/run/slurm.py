"""What the SLURM launcher (`hydra/launcher=slurm`) needs from vae_lab.

- Resources that follow the trainer: `configs/hydra/launcher/slurm.yaml` asks SLURM for
  `${slurm_gpus:...}` GPUs and `${slurm_tasks:...}` tasks per node, worked out here from
  `trainer.accelerator` and `trainer.devices`, so a CPU run asks for no GPU and a DDP run
  for one task per device (Lightning's SLURM environment maps task i to rank i).
- A requeued job continues its run: SLURM restarts a requeued job (preemption, a time
  limit with `max_num_timeout`, node failure, `scontrol requeue`) with the same command,
  so the same run directory, and `SLURM_RESTART_COUNT` > 0; the run then resumes from its
  own `checkpoints/last.ckpt` (`vae_lab.run.resume`) instead of starting over.
- One line instead of a warning per poll: submitit asks `sacct` for the jobs' states; on
  a cluster without job accounting (no slurmdbd) sacct fails and submitit says so every
  time it polls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_lab.cli.errors import UserError

log = logging.getLogger(__name__)

RESTART_VAR = "SLURM_RESTART_COUNT"  # set by SLURM in a job it has started more than once
GPU_ACCELERATORS = ("gpu", "cuda", "auto")  # auto: a GPU where there is one, so ask for it


def device_count(devices: Any) -> int:
    """How many devices `trainer.devices` names: a count (2, "2"), a list of indices
    ([0, 1], "0,1"). `auto` and -1 (every device of the machine) give no number SLURM
    could be asked for, so they are refused."""
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UserError(
        f"hydra/launcher=slurm asks SLURM for one task (and one GPU) per device, so "
        f"trainer.devices must be a number, got {devices!r}; for example trainer.devices=4"
    )


def gpus_per_node(accelerator: Any, devices: Any) -> int:
    """GPUs to ask SLURM for on each node: one per device when the trainer uses GPUs
    (`gpu`, `cuda`, or `auto`, which uses one where there is one), none otherwise."""
    if str(accelerator) not in GPU_ACCELERATORS:
        return 0
    return device_count(devices)


def tasks_per_node(devices: Any) -> int:
    """SLURM tasks per node: Lightning runs one process per device and, under SLURM,
    takes them from the tasks SLURM starts (it requires ntasks-per-node = devices)."""
    return device_count(devices)


def register_resolvers() -> None:
    """`${slurm_gpus:<accelerator>,<devices>}` and `${slurm_tasks:<devices>}` for configs."""
    OmegaConf.register_new_resolver("slurm_gpus", gpus_per_node, replace=True)
    OmegaConf.register_new_resolver("slurm_tasks", tasks_per_node, replace=True)


def resume_if_requeued(cfg: DictConfig) -> None:
    """Point `cfg.ckpt_path` at this run's last checkpoint when SLURM has restarted the job.

    Nothing changes on a job's first start, when `ckpt_path` is set already, or when the
    first start ended before its first checkpoint (it then trains from the beginning).
    """
    restarts = int(os.environ.get(RESTART_VAR) or 0)
    if restarts == 0 or cfg.get("ckpt_path"):
        return
    from vae_lab.run.checkpoints import LAST

    last = Path(cfg.paths.output_dir) / LAST
    if not last.is_file():
        log.info("SLURM restart %d of this job: no checkpoint in %s yet", restarts, last.parent)
        return
    log.info("SLURM restart %d of this job: continuing from %s", restarts, last)
    cfg.ckpt_path = str(last)


class SacctNotice(logging.Filter):
    """Drops submitit's "Bypassing sacct error" warnings (one per poll, printed three
    times each) and says once, in their place, what they and sacct's own "Slurm accounting
    storage is disabled" lines mean."""

    MESSAGE = (
        "sacct: this cluster keeps no job accounting (no slurmdbd), hence 'Slurm accounting "
        "storage is disabled' at each poll; submitit follows the jobs through the result "
        "files they write instead, so a job killed from outside (scancel, a node failure, "
        "the out-of-memory killer) leaves this command waiting: stop it with Ctrl-C"
    )

    def __init__(self) -> None:
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in str(record.msg):
            return True
        if not self.said:
            self.said = True
            log.warning(self.MESSAGE)
        return False


def explain_missing_accounting() -> None:
    """Install `SacctNotice` on submitit's logger (once per process)."""
    submitit_log = logging.getLogger("submitit")
    if not any(isinstance(f, SacctNotice) for f in submitit_log.filters):
        submitit_log.addFilter(SacctNotice())

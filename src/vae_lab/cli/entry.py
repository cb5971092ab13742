"""The entry point every command shares: compose its config with Hydra, run it, and report
a mistake in its input as one `error: ...` line.

    main = command(run, "evaluate")  # vae_lab/evaluate.py; pyproject.toml names `main`

Hydra names a job after the module of the function `hydra.main` decorates, and that
function lives here for every command; so each primary config names its job itself
(`hydra.job.name`, as Hydra documents): the log is `train.log`, `evaluate.log`, ... and
evaluate's and sample's directories are `outputs/evaluate/`, `outputs/sample/`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from vae_lab.cli.config_dir import config_dir
from vae_lab.cli.errors import UserError, report_and_exit
from vae_lab.config.store import register_schemas

# A random token appended to output directories, so that runs started in the same second
# never share one. A command draws it once and passes it to the launcher workers it starts
# through the environment; a process that runs a task function itself gets its own.
TOKEN_VAR = "VAE_LAB_RUN_TOKEN"
_PROCESS_TOKEN = secrets.token_hex(4)
OmegaConf.register_new_resolver(
    "run_token", lambda: os.environ.get(TOKEN_VAR) or _PROCESS_TOKEN, replace=True
)
register_schemas()


def __getattr__(name: str) -> str:
    """`CONFIG_DIR`: the configs directory (`config_dir()`), looked up when first asked for."""
    if name == "CONFIG_DIR":
        return config_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def discard_if_unused() -> None:
    """Remove the directory Hydra made for a single run when the run failed before writing
    anything of its own (only .hydra/, the log, config.yaml): a typo leaves no clutter."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.RUN or not run_dir.is_dir():
        return  # a sweep keeps failed jobs' directories, so a report can show them
    if {p.name for p in run_dir.iterdir()} <= {
        ".hydra",
        f"{hydra_cfg.job.name}.log",
        "config.yaml",
    }:
        shutil.rmtree(run_dir, ignore_errors=True)


def command(run: Callable[[DictConfig], Any], config_name: str) -> Callable[[], None]:
    """The console script that composes `configs/<config_name>.yaml` and calls `run` on it.

    `run`'s return value goes back to Hydra (a sweeper optimizes it). A `UserError` it
    raises is one line and exit status 2 (3 for a diverged run), its empty run directory
    removed; Hydra's composition errors (an unknown option or key, a wrong type) are one
    line too (`hydra_errors.reported`).
    """

    def task(cfg: DictConfig) -> Any:
        try:
            return run(cfg)
        except UserError as e:
            discard_if_unused()
            report_and_exit(e)

    def main() -> None:
        from vae_lab.cli.hydra_errors import reported

        os.environ[TOKEN_VAR] = secrets.token_hex(4)  # this command's, and its workers'
        try:
            configs = config_dir()
        except UserError as e:
            report_and_exit(e)
        with reported(config_name):
            hydra.main(version_base="1.3", config_path=configs, config_name=config_name)(task)()

    main.__doc__ = f"`configs/{config_name}.yaml`'s command: {run.__doc__ or run.__name__}"
    return main

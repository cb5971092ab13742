"""`python -m vae_lab.train`: compose the config, build the parts, fit, then test.

    python -m vae_lab.train model=conv latent_dim=16
    python -m vae_lab.train -m model=mlp,conv latent_dim=2,8,16,32

Every user mistake found here (a bad value, missing data, no GPU) is reported as one
`error: ...` line with exit status 2, before any training starts.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omegaconf import DictConfig, OmegaConf

from vae_lab.cli.entry import command
from vae_lab.cli.errors import TrainingDiverged, UserError
from vae_lab.config.checks import validate
from vae_lab.run.runtime import apply_runtime, apply_wait_policy, stop_nvml_polling
from vae_lab.run.slurm import explain_missing_accounting, register_resolvers, resume_if_requeued
from vae_lab.run.sweeps import check_metric_name, objective, run_sweep_job

if TYPE_CHECKING:
    import lightning as L

    from vae_lab.models.vae import VAE
    from vae_lab.run.resume import Resume

log = logging.getLogger(__name__)

register_resolvers()  # ${slurm_gpus:...}, ${slurm_tasks:...} of hydra/launcher=slurm


def check_accelerator(cfg: DictConfig) -> None:
    import torch

    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} asks for a GPU, but torch finds none "
            "(torch.cuda.is_available() is False); use trainer=cpu, or trainer=default "
            "to use a GPU only where there is one"
        )


def quiet_lightning() -> None:
    """Send Lightning's messages through Hydra's handlers once (console and train.log),
    not twice, and drop a deprecation warning Lightning raises against newer torch, and
    its hint to use `srun` wherever SLURM is installed (a run outside SLURM is meant so)."""
    logging.getLogger("lightning").handlers.clear()
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r"The `srun` command is available")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one model as `cfg` describes; return what `metrics.json` holds.

    With `ckpt_path` set, continue the run that checkpoint belongs to, in its directory
    (`vae_lab.run.resume`). A run that diverges stops with `TrainingDiverged`; its
    `metrics.json` then says so and holds no metrics.
    """
    validate(cfg)
    check_accelerator(cfg)
    resume_if_requeued(cfg)  # a SLURM job started again continues its own run
    resume = None
    if cfg.get("ckpt_path"):
        from vae_lab.run.resume import prepare

        resume = prepare(str(cfg.ckpt_path), _resolved(cfg))
        if resume.run_dir is not None:
            cfg.paths.output_dir = str(resume.run_dir)  # loggers, checkpoints follow it
    apply_runtime(cfg)

    from lightning.pytorch.utilities import rank_zero_only

    from vae_lab.run import directory as run_dirs
    from vae_lab.run import faults

    run_dir = Path(cfg.paths.output_dir)
    if getattr(rank_zero_only, "rank", 0) != 0:  # under DDP every rank runs this function
        return _fit_and_test(cfg, run_dir, resume)
    run_dirs.prepare(run_dir)
    try:
        with run_dirs.held(run_dir), faults.watched():
            _remove_partial_checkpoints(run_dir)
            return _fit_and_test(cfg, run_dir, resume)
    except UserError:
        raise
    except Exception as e:  # a full disk, a directory turned read-only, in whatever guise
        stopped = faults.stopped_by(e, run_dir)
        if stopped is None:
            raise
        raise stopped from e


def _remove_partial_checkpoints(run_dir: Path) -> None:
    """Remove the temporary files of checkpoint writes that a killed run left (under the
    run directory's lock: no other process writes there)."""
    from vae_lab.run.checkpoint_io import remove_leftovers

    removed = remove_leftovers(run_dir / "checkpoints")
    if removed:
        log.info("Removed %d partial checkpoint file(s) a stopped run left", len(removed))


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


@dataclass(frozen=True)
class Parts:
    """What a run trains and tests with, built from its config."""

    datamodule: Any
    model: VAE
    trainer: L.Trainer


def _fit_and_test(cfg: DictConfig, run_dir: Path, resume: Resume | None) -> dict[str, Any]:
    from lightning.pytorch.utilities import rank_zero_only

    from vae_lab.run import faults
    from vae_lab.run.outputs import write_text_atomic

    quiet_lightning()
    config = _resolved(cfg)
    parts = build_parts(cfg, config, resume)
    if resume is not None:
        from vae_lab.run.resume import check_fits

        check_fits(resume, parts.model)
        log.info(
            "Resuming %s (epoch %d, step %d) in %s",
            resume.path,
            resume.epoch,
            resume.global_step,
            run_dir,
        )
    # Written once the run is known to start, so a failed resume leaves its run as it was.
    if getattr(rank_zero_only, "rank", 0) == 0:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(config))
        if resume is not None:  # the run is no longer complete: no stale result may remain
            (run_dir / "metrics.json").unlink(missing_ok=True)
    try:
        fit(parts, resume)
        best, metrics = validate_and_test(parts)
    except TrainingDiverged as e:
        if parts.trainer.is_global_zero:
            write_diverged(parts.trainer, run_dir, e)
        raise
    summary = _summary(parts, config, run_dir, best, metrics)
    faults.raise_if_met()  # the log file failed after the test's end: not complete
    if parts.trainer.is_global_zero:
        write_completed(parts.trainer, config, run_dir, summary)
    return summary


def build_parts(cfg: DictConfig, config: dict[str, Any], resume: Resume | None) -> Parts:
    """Seed, then build the data, the model and the trainer; a config that cannot be built
    (a bad optimizer or scheduler setting included) is a UserError before any training."""
    import lightning as L
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from vae_lab.models.build import build_vae
    from vae_lab.models.speed import apply_speedups

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()  # finds the files, or downloads them if data.download=true
        datamodule.load()
        model = build_vae(cfg, datamodule.input_shape, datamodule.num_classes)
        model = apply_speedups(model, cfg.runtime)
        model.configure_optimizers()  # a bad optimizer/scheduler setting fails here, not mid-fit
        loggers = build_loggers(cfg, resume)
        callbacks = build_callbacks(cfg)
        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
        stop_nvml_polling(trainer.strategy.root_device.type)
    except InstantiationException as e:
        raise UserError(f"could not build the run from its config: {e}") from e
    except (ValueError, TypeError) as e:  # torch.optim's checks of its arguments
        raise UserError(f"optimizer or scheduler config rejected: {e}") from e
    # Kept in every checkpoint, so a checkpoint can rebuild its own model.
    model.hparams.update(
        config=config,
        input_shape=list(datamodule.input_shape),
        num_classes=datamodule.num_classes,
    )
    return Parts(datamodule, model, trainer)


def fit(parts: Parts, resume: Resume | None) -> None:
    """Train, from the start or from the checkpoint `resume` names."""
    parts.trainer.fit(
        parts.model,
        datamodule=parts.datamodule,
        ckpt_path=str(resume.path) if resume is not None else None,
        weights_only=True,
    )


def validate_and_test(parts: Parts) -> tuple[str, dict[str, dict[str, float]]]:
    """The best checkpoint's path ("" if none was written) and its final validation and
    test metrics; `TrainingDiverged` if they are not all finite."""
    from vae_lab.run.outputs import all_finite, stage_metrics

    trainer, model, datamodule = parts.trainer, parts.model, parts.datamodule
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")  # None: no checkpoints
    ckpt_path = best or None  # no checkpoint (fast_dev_run): evaluate the weights in memory
    metrics = {
        "val": stage_metrics(
            trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True),
            "val",
        ),
        "test": stage_metrics(
            trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True),
            "test",
        ),
    }
    if not all_finite(metrics):  # e.g. an infinite KL that beta=0 kept out of the loss
        raise TrainingDiverged(
            f"training diverged: the final metrics of {best or 'the model'} are not all "
            f"finite ({metrics}); try a lower learning rate (optimizer.lr) or gradient "
            "clipping (trainer.gradient_clip_val=1.0)"
        )
    return best, metrics


def write_diverged(trainer: L.Trainer, run_dir: Path, error: TrainingDiverged) -> None:
    """`metrics.json` of a diverged run: why, and the last checkpoint it kept."""
    from vae_lab.callbacks.divergence import last_checkpoint
    from vae_lab.run.outputs import write_json_atomic

    kept = last_checkpoint(trainer)
    write_json_atomic(
        run_dir / "metrics.json",
        {
            "status": "diverged",
            "error": str(error),
            "run_dir": str(run_dir),
            "checkpoint": os.path.relpath(kept, run_dir) if kept else None,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
        },
    )


def _summary(
    parts: Parts,
    config: dict[str, Any],
    run_dir: Path,
    best: str,
    metrics: dict[str, dict[str, float]],
) -> dict[str, Any]:
    from vae_lab.evaluation.bits import is_binarized, not_applicable

    summary: dict[str, Any] = {
        "status": "completed",
        "run_dir": str(run_dir),
        "checkpoint": os.path.relpath(best, run_dir) if best else None,
        "epochs": parts.trainer.current_epoch,
        "global_step": parts.trainer.global_step,
        **metrics,
    }
    if config["eval"]["k"] > 0:  # why the test stage gave no bpd_8bit (or no bpd), if it did not
        summary["not_applicable"] = not_applicable(parts.model.likelihood, is_binarized(config))
    return summary


def write_completed(
    trainer: L.Trainer, config: dict[str, Any], run_dir: Path, summary: dict[str, Any]
) -> None:
    """The hparams tab with the final metrics, then `metrics.json` (last: it says the run
    completed), and a few lines on the console."""
    from vae_lab.run.outputs import log_final_hparams, write_json_atomic

    test_metrics = summary["test"]
    log_final_hparams(trainer.loggers, config, {"val": summary["val"], "test": test_metrics})
    write_json_atomic(run_dir / "metrics.json", summary)
    print(f"\nRun directory: {run_dir}")
    print(f"Test ELBO: {test_metrics.get('elbo', float('nan')):.2f} nats per image")
    if "bpd_8bit" in test_metrics:
        print(f"Test bits/dim of the 8-bit images (a bound): {test_metrics['bpd_8bit']:.4f}")
    print(f"View it with: tensorboard --logdir {run_dir}  (all runs: --logdir outputs)")


def build_loggers(cfg: DictConfig, resume: Resume | None = None) -> list[Any]:
    """The run's loggers from `cfg.logger`; `logger.<name>=null` drops one."""
    return [_build_logger(c, resume) for c in (cfg.get("logger") or {}).values() if c is not None]


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """The run's callbacks: those of `cfg.callbacks` (`callbacks.<name>=null`, or
    `~callbacks.<name>`, drops one) and the two that are not optional."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    from vae_lab.callbacks.disk_faults import DiskFaultGuard
    from vae_lab.callbacks.divergence import DivergenceGuard
    from vae_lab.callbacks.rng_state import RNGState

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if cfg.trainer.enable_progress_bar is False:  # else Lightning refuses the bar callback
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # A diverged run must stop, one whose log file fails too, and a resumed one must draw
    # the same noise.
    return [*callbacks, DivergenceGuard(), DiskFaultGuard(), RNGState()]


def _build_logger(node: DictConfig, resume: Resume | None) -> Any:
    """A logger from config. On resume, TensorBoard is told to purge what the killed
    process logged after the checkpoint's step S (its train steps 0..S-1 and their epoch's
    validation are at steps <= S-1, its image grids at S), so the curves continue without
    doubles; a step-S point it may have logged is re-logged with the same value."""
    from hydra.utils import get_class, instantiate
    from lightning.pytorch.loggers import TensorBoardLogger

    if resume is not None and issubclass(get_class(node._target_), TensorBoardLogger):
        return instantiate(node, purge_step=resume.global_step + 1)
    return instantiate(node)


def run(cfg: DictConfig) -> float:
    """Train as `cfg` says; return `optimized_metric` (val/elbo) for sweepers to optimize.

    A job of a multirun records its failure and lets the other jobs go on (`vae_lab.run.sweeps`).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    apply_wait_policy(cfg.runtime.get("wait_policy"))  # before torch loads
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return run_sweep_job(cfg, train)
    check_metric_name(cfg.optimized_metric)
    return objective(train(cfg), cfg.optimized_metric)


main = command(run, "train")


def cli() -> None:
    """The command: `main`, with submitit's repeated sacct warnings said once."""
    explain_missing_accounting()
    main()


if __name__ == "__main__":
    cli()

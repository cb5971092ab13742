"""`python -m vae_lab.train`: compose the config, build the parts, fit, then test.

    python -m vae_lab.train model=conv latent_dim=16
    python -m vae_lab.train -m model=mlp,conv latent_dim=2,8,16,32

Every user mistake found here (a bad value, missing data, no GPU) is reported as one
`error: ...` line with exit status 2, before any training starts.
"""

from __future__ import annotations

import logging
import os
import secrets
import warnings
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from vae_lab.config import register_schemas, validate
from vae_lab.errors import UserError, report_and_exit

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")

# A token fixed per process tree (inherited by launcher workers through the environment),
# appended to output directories so that runs started in the same second never share one.
os.environ.setdefault("VAE_LAB_RUN_TOKEN", secrets.token_hex(3))
OmegaConf.register_new_resolver("run_token", lambda: os.environ["VAE_LAB_RUN_TOKEN"], replace=True)
register_schemas()


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
    not twice, and drop a deprecation warning Lightning raises against newer torch."""
    logging.getLogger("lightning").handlers.clear()
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one model as `cfg` describes; return what `metrics.json` holds."""
    validate(cfg)
    check_accelerator(cfg)

    import lightning as L

    quiet_lightning()
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    from vae_lab.models.build import build_vae
    from vae_lab.outputs import all_finite, log_final_hparams, stage_metrics, write_json_atomic

    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.save(config, run_dir / "config.yaml")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        datamodule = instantiate(cfg.data)
        datamodule.load()
        model = build_vae(cfg, datamodule.input_shape)
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        if cfg.trainer.enable_progress_bar is False:  # else Lightning refuses the bar callback
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    except InstantiationException as e:
        raise UserError(f"could not build the run from its config: {e}") from e
    # Kept in every checkpoint, so a checkpoint can rebuild its own model.
    model.hparams.update(config=config, input_shape=list(datamodule.input_shape))

    trainer.fit(model, datamodule=datamodule)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
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
    summary: dict[str, Any] = {
        "status": "completed" if all_finite(metrics) else "diverged",
        "run_dir": str(run_dir),
        "checkpoint": os.path.relpath(best, run_dir) if best else None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        **metrics,
    }
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "metrics.json", summary)
        log_final_hparams(trainer.loggers, config, metrics)
        print(f"\nRun directory: {run_dir}")
        print(f"Test ELBO: {metrics['test'].get('elbo', float('nan')):.2f} nats per image")
        print(f"View it with: tensorboard --logdir {run_dir}  (all runs: --logdir outputs)")
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the test ELBO so sweepers can optimize it."""
    try:
        summary = train(cfg)
    except UserError as e:
        report_and_exit(e)
    return float(summary["test"].get("elbo", float("nan")))


if __name__ == "__main__":
    main()

"""Where a training step's time goes: the VAE module in a hand-written loop against Lightning's.

    python benchmarks/step_phases.py [--model mlp] [--repeats 3] [--out F]

`epoch_time.py` measures the framework against a plain loop as a user runs each; this
script takes the difference apart. In one process, alternating, each run one epoch of the
real training split (430 steps at batch 128):

- `module loop`: the same `VAE` module and data as the framework, driven by a hand-written
  loop (cut a uint8 batch, convert it, `training_loss`, zero_grad, backward, Adam step, read
  the loss);
- `lightning`: `lightning.Trainer.fit` of that module and data module with no logger and
  no callback but the phase timer, so what differs is Lightning's loop alone.

Per step it reports milliseconds in four phases (data: from the end of one step to the
start of the next, batch cut and conversion included; forward: `training_step` plus, under
Lightning, the hooks and zero_grad around it; backward; optimizer: Adam's update and what
follows it), the time inside `training_step` itself, and each loop's total against the
module loop's (the median of per-repeat ratios).

`--variants` adds runs of the same epoch: `framework` (Lightning with the callbacks and
loggers that `vae_lab.train` adds and that act on every step) and `manual` (Lightning's
manual optimization: zero_grad, `manual_backward` and the step inside `training_step`, no
closure).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.batches import Batch
from vae_lab.models.build import build_vae
from vae_lab.models.vae import VAE
from vae_lab.run.runtime import stop_nvml_polling
from vae_lab.train import build_callbacks, build_loggers

PHASES = ("data", "forward", "backward", "optimizer")
IMAGE_CALLBACKS = ("image_grids", "latent_pictures", "embedding_projector")


class PhaseTimer(L.Callback):
    """Seconds per phase, cut at the hooks Lightning calls around each training step."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.mark = 0.0

    def _close(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self.mark
        self.mark = now

    def on_train_epoch_start(self, *args: Any) -> None:
        self.mark = time.perf_counter()

    def on_train_batch_start(self, *args: Any) -> None:
        self._close("data")

    def on_before_backward(self, *args: Any) -> None:
        self._close("forward")

    def on_after_backward(self, *args: Any) -> None:
        self._close("backward")

    def on_train_batch_end(self, *args: Any) -> None:
        self._close("optimizer")


def timed_training_step(vae: VAE, timer: PhaseTimer) -> None:
    """Wrap `vae.training_step` so that the timer also holds the seconds spent inside it."""
    inner = vae.training_step
    timer.seconds["training_step"] = 0.0

    def step(*args: Any, **kwargs: Any) -> torch.Tensor:
        start = time.perf_counter()
        loss = inner(*args, **kwargs)
        timer.seconds["training_step"] += time.perf_counter() - start
        return loss

    vae.training_step = step


def module_loop(cfg: Any, datamodule: Any) -> dict[str, float]:
    """One epoch of the VAE module in a hand-written loop; seconds per phase."""
    images, labels = datamodule.splits["train"]
    torch.manual_seed(0)
    vae = build_vae(cfg, list(images.shape[1:]))
    optimizer = instantiate(cfg.optimizer)(params=vae.parameters())  # as the framework builds it
    seconds = dict.fromkeys(PHASES, 0.0)
    batch_size = cfg.data.batch_size
    order = torch.randperm(len(images))
    end = time.perf_counter()  # of the previous step
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        x, y = images[index].to(torch.float32).div_(255.0), labels[index]
        t0 = time.perf_counter()
        loss = vae.training_loss(Batch(x, y)).loss
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        loss.item()  # the framework's divergence guard reads the loss too
        t3 = time.perf_counter()
        for phase, seconds_in_phase in zip(
            PHASES, (t0 - end, t1 - t0, t2 - t1, t3 - t2), strict=True
        ):
            seconds[phase] += seconds_in_phase
        end = t3
    seconds["training_step"] = seconds["forward"]
    return seconds


class ManualVAE(VAE):
    """The VAE with Lightning's manual optimization: no closure, the step in training_step."""

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        optimizer = cast(torch.optim.Optimizer, self.optimizers())
        loss = self.training_loss(batch).loss
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return loss


def lightning_loop(cfg: Any, datamodule: Any, variant: str = "lightning") -> dict[str, float]:
    """One epoch of the same module under `Trainer.fit`; seconds per phase.

    `variant`: `lightning` (no logger, no callback but the timer), `framework` (plus the
    callbacks and loggers `vae_lab.train` adds, those that act per step: image callbacks
    run at validation and training end only and are left out) or `manual` (ManualVAE).
    """
    torch.manual_seed(0)
    vae = build_vae(cfg, list(datamodule.splits["train"][0].shape[1:]))
    if variant == "manual":  # ManualVAE adds no state, so the built VAE can become one
        vae.__class__ = ManualVAE
        vae.automatic_optimization = False
    timer = PhaseTimer()
    timed_training_step(vae, timer)
    callbacks: list[L.Callback] = [timer]
    loggers: Any = False
    if variant == "framework":  # cfg has the image callbacks set to null (main)
        callbacks += build_callbacks(cfg)
        loggers = build_loggers(cfg)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=callbacks,
        enable_checkpointing=variant == "framework",
        enable_progress_bar=variant == "framework",
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=cfg.paths.output_dir,
    )
    stop_nvml_polling("cpu")  # as `vae_lab.train` does
    trainer.fit(vae, datamodule=datamodule)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "conv"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=[], choices=["framework", "manual"])
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_flush_denormal(True)  # as the framework's runtime.flush_denormal does

    with tempfile.TemporaryDirectory(prefix="vae_lab_phases_") as tmp:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            overrides = [f"model={args.model}", f"paths.output_dir={tmp}"]
            overrides += [f"callbacks.{name}=null" for name in IMAGE_CALLBACKS]  # not per step
            cfg = compose("train", overrides=overrides)
        datamodule = instantiate(cfg.data)
        datamodule.load()
        stop_nvml_polling("cpu")
        steps = -(-len(datamodule.splits["train"][0]) // cfg.data.batch_size)

        names = ["module loop", "lightning", *args.variants]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for _ in range(args.repeats):  # alternate, so drifts in machine speed hit all
            runs["module loop"].append(module_loop(cfg, datamodule))
            for name in names[1:]:
                runs[name].append(lightning_loop(cfg, datamodule, name))

    rows = (*PHASES, "total", "training_step")
    table: dict[str, dict[str, float]] = {}
    ratios: dict[str, list[float]] = {}
    for name, results in runs.items():
        for r in results:
            r["total"] = sum(r[p] for p in PHASES)
        table[name] = {
            row: 1e3 * statistics.median(r[row] for r in results) / steps for row in rows
        }
        ratios[name] = [  # per repeat, against the module loop of the same repeat
            r["total"] / base["total"] for r, base in zip(results, runs["module loop"], strict=True)
        ]
        table[name]["ratio"] = statistics.median(ratios[name])
    print(f"ms per step, median of {args.repeats}, {steps} steps, model={args.model}")
    print(f"{'phase':14}" + "".join(f" {name:>12}" for name in names))
    for row in (*rows, "ratio"):
        print(f"{row:14}" + "".join(f" {table[name][row]:12.3f}" for name in names))
    for name in names[1:]:
        print(
            f"{name}: total / module loop per repeat: {', '.join(f'{r:.3f}' for r in ratios[name])}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"model": args.model, "ms_per_step": table, "ratios": ratios}, indent=2)
        )


if __name__ == "__main__":
    main()

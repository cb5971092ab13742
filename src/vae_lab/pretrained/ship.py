"""Make a shipped model from a trained checkpoint: `python -m vae_lab.pretrained ship ...`.

The checkpoint is read as every command reads one (`checkpoints.load`: weights-only, its
config checked), stripped to what loading needs (`KEEP`: no optimizer, scheduler, callback
or loop state, a third of the file or less; no data directory of the training machine),
and written as `<name>/model.ckpt` whole or not at all. The check figure is then measured
on that file by evaluate's own code (`check`), and `<name>/card.json` is written with it,
the full-protocol figures of the evaluate `metrics.json` given (checked to be of this
checkpoint, on the test split) and what the maintainer states: the published row, the
command that retrains it, how long it trained and where. Both files are made in a staging
folder that replaces `<name>/` at the end, so a failed ship leaves no half-made model and
never a card beside another model's weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vae_lab
import vae_lab.pretrained as pretrained
from vae_lab.cli.errors import UserError
from vae_lab.pretrained import check
from vae_lab.run import checkpoints

# What loading needs: the weights, the config and shapes they are rebuilt from, and where
# in training they were taken.
KEEP = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")
METRICS_KEYS = ("split", "images", "k", "iw_nll", "elbo", "epoch", "global_step")


@dataclass(frozen=True)
class Statement:
    """What the maintainer states on the card: what the model is and how it was trained."""

    description: str  # one line
    published: str  # the published row it reproduces (paper, table, row)
    published_nll: float  # that row's test NLL, nats
    retrain: str  # the command that trains it again
    train_hours: float  # wall-clock hours of training
    machine: str  # where it trained
    epochs_trained: int | None = None  # None: the run's metrics.json says


def check_name(name: str) -> None:
    """A name is a folder of the package and a `ckpt_path` value: never a path."""
    if not pretrained.NAME.fullmatch(name):
        raise UserError(
            f"--name {name!r} is not a model name: lowercase letters, digits, _ and - only, "
            "starting with a letter or digit (it names a folder, e.g. published_nll)"
        )


def shippable(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint without its training state (`KEEP`), and without the data directory
    of the machine it trained on (`data.root` null: evaluate looks where a user's data is)."""
    kept = {key: ckpt[key] for key in KEEP if key in ckpt}
    hparams = kept["hyper_parameters"] = copy.deepcopy(ckpt["hyper_parameters"])
    data = hparams["config"].get("data")
    if isinstance(data, dict) and "root" in data:
        data["root"] = None
    return kept


def full_protocol(metrics: Path, ckpt: dict[str, Any], source: Path) -> dict[str, Any]:
    """The figures of evaluate's `metrics.json` at `metrics`, checked to be this checkpoint's
    on the test split."""
    fix = f"pass the metrics.json of `python -m vae_lab.evaluate ckpt_path={source} eval.k=5000`"
    try:
        found = json.loads(metrics.read_text())
    except FileNotFoundError:
        raise UserError(f"--metrics {metrics} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--metrics {metrics} is not a readable JSON file ({e}); {fix}") from e
    missing = [k for k in METRICS_KEYS if not isinstance(found, dict) or k not in found]
    if missing:
        raise UserError(
            f"--metrics {metrics} is not evaluate's ({', '.join(missing)} missing); {fix}"
        )
    if found["split"] != "test":
        raise UserError(f"--metrics {metrics} measured the {found['split']} split, not test; {fix}")
    if not all(math.isfinite(float(found[k])) for k in ("iw_nll", "elbo")):
        raise UserError(f"--metrics {metrics} holds a figure that is not finite; {fix}")
    epoch, step = int(ckpt.get("epoch", -1)), int(ckpt.get("global_step", 0))
    if (found["epoch"], found["global_step"]) != (epoch, step):
        raise UserError(
            f"--metrics {metrics} measured the checkpoint of epoch {found['epoch']}, step "
            f"{found['global_step']}, but {source} is of epoch {epoch}, step {step}; {fix}"
        )
    return {
        "split": "test",
        "images": found["images"],
        "k": found["k"],
        "iw_nll": found["iw_nll"],
        "elbo": found["elbo"],
        "best_epoch": epoch,
        "global_step": step,
        "device": found.get("device"),
    }


def epochs_of_run(source: Path) -> int:
    """The epochs the run of `<run>/checkpoints/<file>` trained, from its metrics.json."""
    summary = source.parent.parent / "metrics.json"
    try:
        return int(json.loads(summary.read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"the epochs trained are not known: {source} is not in a run directory whose "
            "metrics.json says; pass --epochs-trained N"
        ) from None


def ship(
    source: Path,
    name: str,
    metrics: Path,
    statement: Statement,
    into: Path,
    force: bool = False,
    check_settings: dict[str, Any] | None = None,
    data_root: str | Path | None = None,
) -> Path:
    """Write `<into>/<name>/` (model.ckpt, card.json) from the checkpoint `source`; return it."""
    check_name(name)
    target = into / name
    if target.exists() and not force:
        raise UserError(f"{target} exists; pass --force to replace it, or choose another --name")
    path = checkpoints.resolve(source)
    ckpt = checkpoints.load(path)
    full = full_protocol(metrics, ckpt, path)
    epochs = statement.epochs_trained or epochs_of_run(path)
    settings = check_settings or check.settings()
    staging = into / f".{name}.staging-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        from vae_lab.run.checkpoint_io import AtomicCheckpointIO
        from vae_lab.run.outputs import write_json_atomic

        model = staging / pretrained.CHECKPOINT
        AtomicCheckpointIO().save_checkpoint(shippable(ckpt), model)
        figures = check.measure(model, settings, data_root)
        card = {
            "name": name,
            "description": statement.description,
            "published": {"row": statement.published, "iw_nll": statement.published_nll},
            "full_protocol": {
                **full,
                "epochs_trained": epochs,
                "train_hours": statement.train_hours,
                "machine": statement.machine,
            },
            "retrain": statement.retrain,
            "evaluate": f"python -m vae_lab.evaluate ckpt_path={name} eval.k={full['k']}",
            "check": {**settings, **figures, "command": check.command(name, settings)},
            "checkpoint": {
                "file": pretrained.CHECKPOINT,
                "bytes": model.stat().st_size,
                "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                "source": path.name,
            },
            "vae_lab_version": vae_lab.__version__,
        }
        write_json_atomic(staging / pretrained.CARD, card)
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace(staging: Path, target: Path) -> None:
    """Put the folder `staging` where `target` is, the old one (if any) removed after."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    os.replace(target, old)
    os.replace(staging, target)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()

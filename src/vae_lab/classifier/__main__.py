"""`python -m vae_lab.classifier`: train the Fashion-MNIST classifier FID and KID are measured in.

    python -m vae_lab.classifier                         # or: make classifier
    python -m vae_lab.classifier epochs=2 out_dir=/tmp/classifier runtime.num_threads=1

Trains on the VAEs' own training split (the same `data.split_seed` and `data.val_size`:
55,000 images), prints validation and test accuracy, and writes
`outputs/classifier/fashion_cnn-<hash>.pt` (weights only) with its config, accuracy and
training time in `fashion_cnn-<hash>.json` beside it, where `vae_lab.evaluate` looks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from vae_lab.classifier import DEFAULT_DIR
from vae_lab.cli.entry import command
from vae_lab.cli.errors import UserError
from vae_lab.config.checks import check_runtime
from vae_lab.config.schemas import DataConfig, RuntimeConfig

if TYPE_CHECKING:
    import torch

    from vae_lab.classifier.fit import FitResult
    from vae_lab.classifier.net import FashionCNN

log = logging.getLogger(__name__)


@dataclass
class ClassifierConfig:
    """Typed, so a misspelt key or a wrong type stops the command at composition."""

    seed: int = 0
    epochs: int = 5
    lr: float = 3e-3
    weight_decay: float = 1e-4
    flip: bool = True
    channels: list[int] = field(default_factory=lambda: [32, 64])
    features: int = 128
    dropout: float = 0.3
    out_dir: str = str(DEFAULT_DIR)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


ConfigStore.instance().store(name="classifier_schema", node=ClassifierConfig)


def check(cfg: DictConfig) -> None:
    """Values the types allow but training cannot use."""
    if cfg.epochs < 1:
        raise UserError(
            f"epochs must be a positive integer, got {cfg.epochs}; for example epochs=5"
        )
    if not 0 < cfg.lr < float("inf"):
        raise UserError(f"lr must be a positive number, got {cfg.lr}; for example lr=3e-3")
    if cfg.features < 1 or not cfg.channels or min(cfg.channels) < 1:
        raise UserError(
            f"features and channels must be positive, got features={cfg.features} "
            f"channels={list(cfg.channels)}; for example channels=[32,64] features=128"
        )
    if not 0 <= cfg.dropout < 1:
        raise UserError(f"dropout must be in [0, 1), got {cfg.dropout}; for example dropout=0.3")
    if cfg.data.binarize != "none":
        raise UserError(
            "the classifier is trained on the 8-bit images, whatever data a VAE used; "
            "drop the data.binarize override"
        )
    if cfg.data.batch_size < 1:
        raise UserError(f"data.batch_size must be a positive integer, got {cfg.data.batch_size}")
    check_runtime(cfg.runtime)


def run(cfg: DictConfig) -> Path:
    """Train, measure and save the classifier as `cfg` says; return the weights file."""
    from vae_lab.run.runtime import apply_wait_policy

    check(cfg)
    apply_wait_policy(cfg.runtime.wait_policy)  # before torch loads
    import torch
    from hydra.utils import instantiate

    from vae_lab.classifier.fit import accuracy
    from vae_lab.classifier.store import save
    from vae_lab.run.runtime import apply_runtime

    apply_runtime(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.load()
    (images, labels), val, test = (datamodule.splits[s] for s in ("train", "val", "test"))
    net, arch, result = _train(cfg, images, labels, list(datamodule.input_shape))
    start = time.perf_counter()
    measured = {"val_accuracy": accuracy(net, *val), "test_accuracy": accuracy(net, *test)}
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    info = {
        **measured,
        "train_seconds": round(result.seconds, 1),
        "train_cpu_seconds": round(result.cpu_seconds, 1),
        "measure_seconds": round(time.perf_counter() - start, 1),
        "final_train_loss": result.final_train_loss,
        "train_images": len(images),
        "threads": torch.get_num_threads(),
        "config": config,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        weights = save(net, arch, info, Path(cfg.out_dir))
    except OSError as e:
        raise UserError(f"cannot write the classifier into out_dir={cfg.out_dir}: {e}") from e
    print(
        f"Test accuracy {measured['test_accuracy']:.2%} (validation {measured['val_accuracy']:.2%})"
        f" after {cfg.epochs} epochs: {result.seconds:.0f} s wall clock, {result.cpu_seconds:.0f} s"
        f" of CPU time on {torch.get_num_threads()} threads"
    )
    print(f"Wrote {weights} (config and accuracy in {weights.with_suffix('.json').name})")
    return weights


def _train(
    cfg: DictConfig, images: torch.Tensor, labels: torch.Tensor, input_shape: list[int]
) -> tuple[FashionCNN, dict[str, Any], FitResult]:
    """A new network as `cfg` describes, trained on the images: it, its architecture (what
    the weights file records to rebuild it) and how the training went."""
    import torch

    from vae_lab.classifier.fit import fit
    from vae_lab.classifier.net import FashionCNN

    arch = {
        "input_shape": input_shape,
        "channels": list(cfg.channels),
        "features": cfg.features,
        "classes": int(labels.max()) + 1,
        "dropout": cfg.dropout,
    }
    torch.manual_seed(cfg.seed)
    net = FashionCNN(**arch)
    log.info(f"training on {len(images)} images, {torch.get_num_threads()} threads")
    result = fit(
        net,
        images,
        labels,
        cfg.epochs,
        cfg.data.batch_size,
        cfg.lr,
        cfg.weight_decay,
        cfg.flip,
        cfg.seed,
        on_epoch=lambda epoch, loss: log.info(f"epoch {epoch}: train loss {loss:.4f}"),
    )
    return net, arch, result


main = command(run, "classifier")


if __name__ == "__main__":
    main()

"""A shipped model's check figure: the importance-weighted NLL and the ELBO on the first
`limit` test images at a small `k`, z drawn after seeding torch with `seed`, on the CPU.

Measured by `python -m vae_lab.evaluate`'s own code (its config composed as the command
composes it, the model and data loaded by `load_trained`, the bounds by `evaluate.bounds`),
so the card's `check.command` prints the same figures. `ship` measures it once and writes
it on the card; tests/test_pretrained.py measures it again against the card, in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

SPLIT = "test"
LIMIT = 500  # the first 500 test images: a few seconds on a CPU at k = 100
K = 100
SEED = 0
DEVICE = "cpu"  # the same figure on every machine, to a few hundredths of a nat


def settings(limit: int = LIMIT, k: int = K, seed: int = SEED) -> dict[str, Any]:
    """What a card's `check` entry records besides the figures."""
    return {"split": SPLIT, "limit": limit, "k": k, "seed": seed, "device": DEVICE}


def command(ckpt: str, check: dict[str, Any]) -> str:
    """The evaluate command that prints the check figure of `ckpt` (a path or a name)."""
    return (
        f"python -m vae_lab.evaluate ckpt_path={ckpt} eval.split={check['split']} "
        f"eval.limit={check['limit']} eval.k={check['k']} seed={check['seed']} "
        f"device={check['device']}"
    )


def _config(ckpt: Path, check: dict[str, Any], data_root: str | Path | None) -> DictConfig:
    """configs/evaluate.yaml composed as the command composes it, set as `check` says."""
    from hydra import compose, initialize_config_dir

    from vae_lab.cli.config_dir import config_dir
    from vae_lab.config.store import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("evaluate")
    cfg.ckpt_path = str(ckpt)  # set, not parsed as an override: any path will do
    cfg.device = check["device"]
    cfg.seed = check["seed"]
    cfg.eval.split, cfg.eval.limit, cfg.eval.k = check["split"], check["limit"], check["k"]
    if data_root is not None:
        cfg.data.root = str(data_root)
    return cfg


def measure(
    ckpt: Path, check: dict[str, Any], data_root: str | Path | None = None
) -> dict[str, float]:
    """`iw_nll` and `elbo` of the checkpoint `ckpt` as `check` (`settings()`) says, on the
    Fashion-MNIST in `data_root` (None: where evaluate finds it)."""
    from vae_lab.config.checks import check_evaluate
    from vae_lab.evaluate import bounds
    from vae_lab.evaluation.trained import load_trained

    cfg = _config(ckpt, check, data_root)
    check_evaluate(cfg)
    figures = bounds(load_trained(cfg), cfg)
    return {"iw_nll": float(figures["iw_nll"]), "elbo": float(figures["elbo"])}

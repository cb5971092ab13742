"""What a finished run writes beside its checkpoints: metrics.json and the hparams summary."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger


def stage_metrics(results: list[Mapping[str, float]], stage: str) -> dict[str, float]:
    """`{"val/elbo": x, ...}` from `trainer.validate/test` -> `{"elbo": x, ...}`."""
    merged: dict[str, float] = {}
    for result in results:
        merged.update(result)
    prefix = f"{stage}/"
    return {k[len(prefix) :]: float(v) for k, v in merged.items() if k.startswith(prefix)}


def all_finite(metrics: Mapping[str, Mapping[str, float]]) -> bool:
    return all(math.isfinite(v) for stage in metrics.values() for v in stage.values())


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write then rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[name] = "None" if value is None else value
        else:
            flat[name] = str(value)
    return flat


def log_final_hparams(
    loggers: list[Logger], config: Mapping[str, Any], metrics: Mapping[str, Mapping[str, float]]
) -> None:
    """Write the hparams tab once, at the end, with the run's final metrics beside its config."""
    params = _flatten({k: v for k, v in config.items() if k not in ("paths", "callbacks")})
    final = {f"hp/{stage}_{name}": v for stage, ms in metrics.items() for name, v in ms.items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final)
        else:
            logger.log_hyperparams(params)
        logger.save()

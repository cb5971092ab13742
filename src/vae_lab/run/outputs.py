"""What a run writes beside its checkpoints: metrics.json and config.yaml, each whole or not
at all, and the hparams summary."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger

from vae_lab.cli.errors import os_error_in


def stage_metrics(results: list[Mapping[str, float]], stage: str) -> dict[str, float]:
    """`{"val/elbo": x, ...}` from `trainer.validate/test` -> `{"elbo": x, ...}`."""
    merged: dict[str, float] = {}
    for result in results:
        merged.update(result)
    prefix = f"{stage}/"
    return {k[len(prefix) :]: float(v) for k, v in merged.items() if k.startswith(prefix)}


def all_finite(metrics: Mapping[str, Mapping[str, float]]) -> bool:
    return all(math.isfinite(v) for stage in metrics.values() for v in stage.values())


@contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; renamed over `path` when the
    block ends, removed when it fails, so a reader never sees a half-written file and a
    failed write leaves the old one. A full disk or a read-only directory is raised as an
    OSError naming `path` (not the temporary file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with suppress(OSError):  # a read-only directory refuses this too
            tmp.unlink(missing_ok=True)
        fault = os_error_in(e)
        if fault is None:
            raise
        where = fault.filename if fault.filename not in (None, str(tmp)) else str(path)
        raise OSError(fault.errno, fault.strerror, where) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (`replaced_whole`)."""
    with replaced_whole(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write then rename, so a reader never sees a half-written file."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


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

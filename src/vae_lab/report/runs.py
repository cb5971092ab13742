"""Find the runs under a directory and read what each left behind, whatever state it is in.

A run is a directory holding `.hydra/` (what Hydra writes for every job) or `metrics.json`
(what `train()` writes at the end). What it was asked to do comes from
`.hydra/overrides.yaml` (the command-line and sweep overrides) and its composed config; how
it ended from `metrics.json`: "completed", "diverged" or "failed" (a sweep job that raised).
What `python -m vae_lab.evaluate` measured on its test split (`evaluate_test.json`, beside
the checkpoints: FID, KID, bits/dim with many samples) joins it as `eval/*` columns.
A run without one is "unfinished" (still running, or killed); an unreadable file makes the
run "unreadable". Reading never raises for a run: the report shows every run as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Keys that only say where a run reads or writes, not what it is: never "swept". A resume
# (`ckpt_path`) continues the same run.
PLUMBING_KEYS = (
    *("data.root", "data.cache_dir", "paths.output_dir", "trainer.default_root_dir"),
    "ckpt_path",
)
JOB_DIR = re.compile(r"^(\d+)_")  # a multirun job directory: <job number>_<overrides>
EVALUATION = "evaluate_test.json"  # what `vae_lab.evaluate` leaves in a run's directory
EVAL_METRICS = (
    *("k", "iw_nll", "bpd", "bpd_8bit", "kl", "active_units", "fid", "kid"),
    *("fid_floor", "kid_floor", "fid_ceiling", "kid_ceiling"),
)


@dataclass
class Run:
    """One run as the report sees it."""

    path: Path
    name: str  # short and unique under the report's root: "3" or "runs/<date>/<time>"
    status: str  # completed | diverged | failed | unfinished | unreadable
    overrides: dict[str, str] = field(default_factory=dict)  # key -> value as typed
    params: dict[str, Any] = field(default_factory=dict)  # model, likelihood, latent_dim
    metrics: dict[str, float] = field(default_factory=dict)  # "test/elbo" -> value
    not_applicable: dict[str, str] = field(default_factory=dict)  # "test/bpd_8bit" -> why
    epochs: int | None = None
    error: str = ""


def find_runs(root: Path) -> list[Path]:
    """Every run directory under `root` (`root` itself included), in path order."""
    found = {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    found |= {p.parent for p in root.rglob("metrics.json") if ".hydra" not in p.parts}
    if (root / ".hydra").is_dir() or (root / "metrics.json").is_file():
        found.add(root)
    return sorted(found)


def _short_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if path != root else Path(path.name)
    job = JOB_DIR.match(rel.name)
    return str(rel.parent / job.group(1)) if job else str(rel)


def _overrides(path: Path) -> dict[str, str]:
    """`.hydra/overrides.yaml` as {key: value}; `+key=v` and `++key=v` count as `key=v`."""
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return {}
    pairs = {}
    for line in OmegaConf.load(file):
        key, sep, value = str(line).lstrip("+~").partition("=")
        if sep and key not in PLUMBING_KEYS:
            pairs[key] = value
    return pairs


def _params(path: Path) -> dict[str, Any]:
    """The run's model and likelihood (Hydra's group choices) and its latent size."""
    params: dict[str, Any] = {}
    hydra_file = path / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choices = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices") or {}
        params.update({k: choices[k] for k in ("model", "likelihood") if k in choices})
    for file in (path / "config.yaml", path / ".hydra" / "config.yaml"):
        if file.is_file():  # config.yaml is resolved; .hydra's exists even if the run failed
            config = OmegaConf.load(file)
            latent = config.get("latent_dim") if isinstance(config, DictConfig) else None
            if isinstance(latent, int):
                params["latent_dim"] = latent
                break
    return params


def _metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    return {
        f"{stage}/{name}": float(value)
        for stage in ("val", "test")
        for name, value in (summary.get(stage) or {}).items()
    }


def _evaluation(path: Path) -> tuple[dict[str, float], dict[str, str]]:
    """`evaluate_test.json` as `eval/*` metrics and the reasons for the ones it lacks."""
    file = path / EVALUATION
    if not file.is_file():
        return {}, {}
    summary = json.loads(file.read_text())
    metrics = {
        f"eval/{name}": float(summary[name])
        for name in EVAL_METRICS
        if isinstance(summary.get(name), (int, float)) and not isinstance(summary[name], bool)
    }
    reasons = {f"eval/{k}": str(v) for k, v in (summary.get("not_applicable") or {}).items()}
    return metrics, reasons


def read_run(path: Path, root: Path) -> Run:
    run = Run(path=path, name=_short_name(path, root), status="unfinished")
    try:
        run.overrides = _overrides(path)
        run.params = _params(path)
        metrics_file = path / "metrics.json"
        if metrics_file.is_file():
            summary = json.loads(metrics_file.read_text())
            run.status = str(summary.get("status", "unknown"))
            run.metrics = _metrics(summary)
            run.epochs = summary.get("epochs")
            run.error = str(summary.get("error") or "")
            reasons = summary.get("not_applicable") or {}
            run.not_applicable = {f"test/{k}": str(v) for k, v in reasons.items()}
        evaluated, reasons = _evaluation(path)
        run.metrics.update(evaluated)
        run.not_applicable.update(reasons)
    except Exception as e:  # one run's damaged file must not stop the report: show it
        run.status, run.error = "unreadable", f"{type(e).__name__}: {e}"
    return run


def swept_keys(runs: list[Run]) -> list[str]:
    """The override keys whose value is not the same in every run, in first-seen order."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.overrides))
    return [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]

"""One row per run: its swept keys, how it ended, and its final metrics; as CSV and Markdown."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vae_lab.report.runs import Run

# Metric names in the order a reader wants them; others follow alphabetically.
METRIC_ORDER = ("elbo", "recon", "kl", "iw_nll", "bpd_8bit", "bpd", "active_units", "fid", "kid")
STAGE_ORDER = ("val", "test", "eval")  # eval: `vae_lab.evaluate`'s figures
NOT_APPLICABLE = "n/a"  # a metric that does not apply to the run (metrics.json says why)
# Name parts of metrics where lower is better: a code length or a loss (nats, bits), and
# distances between sample and data distributions (FID, KID). The ELBO, and a metric named
# by none of these, sorts highest first.
LOWER_IS_BETTER = frozenset({"nll", "bpd", "recon", "loss", "fid", "kid"})
MAX_ERROR_CHARS = 100  # in the Markdown table; the CSV keeps the whole message


def _metric_rank(key: str) -> tuple[int, int, str]:
    stage, name = key.split("/", 1)
    position = METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER)
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else 1, position, name)


def metric_columns(runs: Sequence[Run]) -> list[str]:
    return sorted({k for run in runs for k in run.metrics}, key=_metric_rank)


def _natural(value: str | None) -> tuple[int, float, str]:
    """Sort numbers as numbers ("2" < "16") and put missing values last."""
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def lower_is_better(metric: str) -> bool:
    """`test/iw_nll`, `val/recon`, `test/bpd_8bit`, `train/loss`: yes; `val/elbo`: no."""
    name = metric.rsplit("/", 1)[-1].lower()
    return bool(LOWER_IS_BETTER & set(name.split("_")))


def sort_runs(runs: Sequence[Run], keys: Sequence[str], by: str | None = None) -> list[Run]:
    """By the swept keys (a grid reads in order), or best first by the metric `by`
    (lowest first for NLL, bpd, recon, loss, FID, KID; highest first for the ELBO and
    others; runs without a finite value last)."""
    if by is None:
        return sorted(runs, key=lambda r: ([_natural(r.overrides.get(k)) for k in keys], r.name))
    sign = 1.0 if lower_is_better(by) else -1.0

    def score(run: Run) -> float:
        value = run.metrics.get(by, math.nan)
        return sign * value if math.isfinite(value) else math.inf

    return sorted(runs, key=lambda r: (score(r), r.name))


def rows(runs: Sequence[Run], keys: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """The header and one row per run, as plain values (floats for metrics)."""
    metrics = metric_columns(runs)
    header = ["run", *keys, "status", "epochs", *metrics, "error", "path"]
    body = [
        [
            run.name,
            *(run.overrides.get(k, "") for k in keys),
            run.status,
            "" if run.epochs is None else run.epochs,
            *(
                run.metrics.get(m, NOT_APPLICABLE if m in run.not_applicable else "")
                for m in metrics
            ),
            run.error,
            str(run.path),
        ]
        for run in runs
    ]
    return header, body


def write_csv(path: Path, header: list[str], body: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def markdown(header: list[str], body: list[list[Any]]) -> str:
    """A GitHub Markdown table (without the long `path` column: the CSV has it)."""
    keep = [i for i, name in enumerate(header) if name != "path"]
    lines = [
        "| " + " | ".join(header[i] for i in keep) + " |",
        "|" + "|".join("---" for _ in keep) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row[i]) for i in keep) + " |" for row in body]
    return "\n".join(lines) + "\n"

"""The report's tables: one row per run (CSV), and one row per group of runs that differ
only in their seed (Markdown and CSV), each metric as mean ± sd over the group."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vae_lab.report.groups import SEED_KEY, Group, Stat
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


def sort_groups(groups: Sequence[Group], keys: Sequence[str], by: str | None = None) -> list[Group]:
    """As `sort_runs`, a group's value of `by` being its mean over its runs."""
    if by is None:
        return sorted(groups, key=lambda g: [_natural(g.overrides.get(k)) for k in keys])
    sign = 1.0 if lower_is_better(by) else -1.0

    def score(group: Group) -> float:
        stat = group.stat(by)
        return sign * stat.mean if stat is not None else math.inf

    return sorted(groups, key=score)


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
    """Rows of plain values; a `Stat` cell becomes three columns: mean, `_sd`, `_n`."""
    stats = {i for row in body for i, value in enumerate(row) if isinstance(value, Stat)}
    wide = [
        [name, f"{name}_sd", f"{name}_n"] if i in stats else [name] for i, name in enumerate(header)
    ]

    def cells(i: int, value: Any) -> list[Any]:
        if i not in stats:
            return [value]
        if isinstance(value, Stat):
            return [value.mean, "" if math.isnan(value.sd) else value.sd, value.n]
        return [value, "", 0 if value == "" else ""]

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([name for names in wide for name in names])
        writer.writerows([[c for i, v in enumerate(row) for c in cells(i, v)] for row in body])


def group_rows(groups: Sequence[Group], keys: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """The header and one row per group: its shared keys, its seeds and size where some
    group repeats a setting, how its runs ended, and a `Stat` per metric."""
    runs = [run for group in groups for run in group.runs]
    metrics = metric_columns(runs)
    shown = [k for k in keys if k != SEED_KEY]
    repeated = any(len(group.runs) > 1 for group in groups)
    header = ["run", *shown, *(("seeds", "n") if repeated else ()), "status", "epochs"]
    header += [*metrics, "error", "path"]
    body = []
    for group in groups:
        row: list[Any] = [group.name, *(group.overrides.get(k, "") for k in shown)]
        if repeated:
            row += [",".join(group.seeds), len(group.runs)]
        row += [group.status, group.epochs]
        for m in metrics:
            stat = group.stat(m)
            row.append(stat if stat else NOT_APPLICABLE if group.not_applicable(m) else "")
        body.append([*row, group.error, "; ".join(str(run.path) for run in group.runs)])
    return header, body


def _cell(value: Any) -> str:
    if isinstance(value, Stat):  # "228.76 ± 0.12"; "(n=2)" where a run of the group lacks it
        text = f"{value.mean:.2f}" if value.n == 1 else f"{value.mean:.2f} ± {value.sd:.2f}"
        return text if value.n == value.runs else f"{text} (n={value.n})"
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

"""`python -m vae_lab.report DIR`: one table and plots of every run under DIR.

    python -m vae_lab.report outputs/multirun/2026-11-25/10-00-00_1a2b3c4d
    python -m vae_lab.report outputs --sort test/elbo

Writes into DIR (or --out) and prints the Markdown table:

- `report.csv`: one row per run, every metric as the run measured it;
- `report.md` and `report_groups.csv`: one row per group of runs that differ only in their
  seed, each metric as its mean, sample standard deviation and n (`report.groups`);
- `test_metrics_vs_latent_dim.png`: the groups' test metrics against latent size, with
  error bars of one standard deviation where a group has several seeds.

Failed and unfinished runs are rows like the others.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from vae_lab.cli.errors import UserError, report_and_exit
from vae_lab.report.groups import Group, group_by_seed
from vae_lab.report.plots import plot_test_metrics
from vae_lab.report.runs import Run, find_runs, read_run, swept_keys
from vae_lab.report.table import (
    group_rows,
    markdown,
    metric_columns,
    rows,
    sort_groups,
    sort_runs,
    write_csv,
)

__all__ = ["Group", "Report", "Run", "main", "make_report"]


@dataclass
class Report:
    """What a report wrote, and the runs it read."""

    runs: list[Run]
    groups: list[Group]  # runs that differ only in their seed
    swept: list[str]
    csv: Path
    groups_csv: Path
    markdown: Path
    plot: Path | None
    table: str


def make_report(root: Path, out: Path | None = None, sort: str | None = None) -> Report:
    """Read every run under `root`; write the CSV, Markdown table and plot into `out`."""
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give a multirun directory or outputs/")
    paths = find_runs(root)
    if not paths:
        raise UserError(
            f"no runs under {root} (a run is a directory with .hydra/ or metrics.json); "
            "give a directory that python -m vae_lab.train wrote, e.g. outputs/multirun/<date>"
        )
    runs = [read_run(p, root) for p in paths]
    if sort is not None and sort not in metric_columns(runs):
        known = ", ".join(metric_columns(runs)) or "none yet"
        raise UserError(f"--sort {sort} is not a metric of these runs; they have: {known}")
    swept = swept_keys(runs)
    runs = sort_runs(runs, swept, by=sort)
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "report.csv", *rows(runs, swept))
    groups = sort_groups(group_by_seed(runs), swept, by=sort)
    header, body = group_rows(groups, swept)
    write_csv(out / "report_groups.csv", header, body)
    table = markdown(header, body)
    (out / "report.md").write_text(table)
    plot = plot_test_metrics(groups, swept, out)
    return Report(
        runs, groups, swept, out / "report.csv", out / "report_groups.csv", out / "report.md",
        plot, table,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vae_lab.report", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("dir", type=Path, help="a multirun directory, a run, or all of outputs/")
    parser.add_argument("--out", type=Path, help="where to write the files (default: DIR)")
    parser.add_argument(
        "--sort",
        help="a metric to sort by, best first (a group of seeds by its mean): lowest NLL, "
        "bpd, loss; highest ELBO",
    )
    args = parser.parse_args(argv)
    try:
        report = make_report(args.dir, args.out, args.sort)
    except UserError as e:
        report_and_exit(e)
    print(report.table)
    statuses = [run.status for run in report.runs]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    print(f"{len(statuses)} runs: {counts}")
    for path in (report.csv, report.groups_csv, report.markdown, report.plot):
        if path is not None:
            print(f"wrote {path}")

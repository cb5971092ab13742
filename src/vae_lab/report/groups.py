"""Runs that differ only in their seed, as one group: a mean, a standard deviation and n.

Two runs belong together when their overrides are the same once `seed` and the keys that
only say where a run reads or writes (`runs.PLUMBING_KEYS`) are set aside: the same model,
data and recipe, started from different seeds (or the same seed twice). A sweep without
repeated seeds gives groups of one, and the report reads as one row per run.

For every metric a group reports the mean over its runs that have a finite value, the
sample standard deviation (n - 1 in the denominator; undefined for n = 1) and n.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from vae_lab.report.runs import Run

SEED_KEY = "seed"


@dataclass(frozen=True)
class Stat:
    """One metric over a group's runs."""

    mean: float
    sd: float  # sample standard deviation; NaN for a single value
    n: int  # runs with a finite value
    runs: int  # runs in the group


def summarize(values: Sequence[float], runs: int | None = None) -> Stat | None:
    """Mean, sample standard deviation and count of the finite `values`, of a group of
    `runs` (default: as many as values); None if no value is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    sd = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return Stat(statistics.fmean(finite), sd, len(finite), len(values) if runs is None else runs)


@dataclass
class Group:
    """Runs that differ only in `seed`, in the order the report read them."""

    runs: list[Run]
    overrides: dict[str, str] = field(default_factory=dict)  # shared, without `seed`

    @property
    def name(self) -> str:
        return ", ".join(run.name for run in self.runs)

    @property
    def seeds(self) -> list[str]:
        """Each run's seed as typed (`default` where the run kept the config's)."""
        return [run.overrides.get(SEED_KEY, "default") for run in self.runs]

    @property
    def params(self) -> dict[str, object]:
        return self.runs[0].params

    @property
    def status(self) -> str:
        """The runs' status when they agree, else a count of each: "2 completed, 1 failed"."""
        statuses = [run.status for run in self.runs]
        if len(set(statuses)) == 1:
            return statuses[0]
        return ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))

    @property
    def epochs(self) -> str:
        """The runs' epoch count when they agree, else its range: "48-50"."""
        epochs = sorted({run.epochs for run in self.runs if run.epochs is not None})
        if not epochs:
            return ""
        return str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"

    @property
    def error(self) -> str:
        return "; ".join(dict.fromkeys(run.error for run in self.runs if run.error))

    def stat(self, metric: str) -> Stat | None:
        values = [run.metrics[metric] for run in self.runs if metric in run.metrics]
        return summarize(values, len(self.runs))

    def not_applicable(self, metric: str) -> bool:
        """Whether the metric applies to none of the runs (their metrics files say why)."""
        return all(metric in run.not_applicable for run in self.runs)


def _identity(run: Run) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in run.overrides.items() if k != SEED_KEY))


def group_by_seed(runs: Sequence[Run]) -> list[Group]:
    """The groups of `runs` that differ only in `seed`, in the order each first appears."""
    groups: dict[tuple[tuple[str, str], ...], Group] = {}
    for run in runs:
        key = _identity(run)
        if key not in groups:
            groups[key] = Group([], dict(key))
        groups[key].runs.append(run)
    return list(groups.values())

"""`report` on a real sweep over seeds: runs that differ only in `seed` share one row, each
metric as the mean, sample standard deviation and n of the runs' own figures."""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from tests.test_sweeps import job_dirs, sweep_args, sweep_dirs
from vae_lab.report import make_report
from vae_lab.report.groups import summarize
from vae_lab.train import cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """`-m latent_dim=2,3 seed=1,2,3`, run in this process by Hydra's basic launcher."""
    cwd = tmp_path_factory.mktemp("seeds")
    argv = sweep_args(tiny_data, "latent_dim=2,3", "seed=1,2,3", "callbacks=none")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, "argv", ["vae_lab.train", *argv])
        try:
            cli()
        finally:
            GlobalHydra.instance().clear()
    (sweep,) = sweep_dirs(cwd)
    return sweep


def _test_elbos(sweep: Path) -> dict[tuple[str, str], float]:
    """{(latent_dim, seed): test ELBO} from each job's own metrics.json."""
    found = {}
    for job in job_dirs(sweep):
        overrides = dict(line.split("=") for line in job.name.split("_", 1)[1].split(","))
        summary = json.loads((job / "metrics.json").read_text())
        found[(overrides["latent_dim"], overrides["seed"])] = summary["test"]["elbo"]
    return found


def test_seeds_share_a_row_with_mean_sd_and_n(seed_sweep: Path, tmp_path: Path) -> None:
    elbos = _test_elbos(seed_sweep)
    assert len(elbos) == 6 and len(set(elbos.values())) == 6  # seeds gave different runs
    report = make_report(seed_sweep, out=tmp_path)
    assert [sorted(g.seeds) for g in report.groups] == [["1", "2", "3"]] * 2
    for group, latent in zip(report.groups, ("2", "3"), strict=True):
        values = [elbos[(latent, seed)] for seed in ("1", "2", "3")]
        stat = group.stat("test/elbo")
        assert stat is not None and stat.n == 3
        assert stat.mean == pytest.approx(sum(values) / 3, rel=1e-12)
        squares = sum((v - stat.mean) ** 2 for v in values)
        assert stat.sd == pytest.approx(math.sqrt(squares / 2), rel=1e-9)  # n - 1 = 2

    table = report.table.splitlines()
    assert table[0].startswith("| run | latent_dim | seeds | n | status | epochs | val/elbo |")
    assert len(table) == 2 + 2  # header, rule, one row per latent size
    mean, sd = report.groups[0].stat("test/elbo").mean, report.groups[0].stat("test/elbo").sd
    assert f"{mean:.2f} ± {sd:.2f}" in table[2]

    with report.groups_csv.open() as f:
        grouped = list(csv.DictReader(f))
    assert [row["n"] for row in grouped] == ["3", "3"]
    assert float(grouped[1]["test/elbo_sd"]) == pytest.approx(report.groups[1].stat("test/elbo").sd)
    with report.csv.open() as f:  # the per-seed figures stay, one row per run
        per_run = {(r["latent_dim"], r["seed"]): float(r["test/elbo"]) for r in csv.DictReader(f)}
    assert per_run == pytest.approx(elbos)
    assert report.plot is not None and report.plot.is_file()


def test_sort_orders_groups_by_their_mean(seed_sweep: Path, tmp_path: Path) -> None:
    report = make_report(seed_sweep, out=tmp_path, sort="test/elbo")
    means = [g.stat("test/elbo").mean for g in report.groups]
    assert means == sorted(means, reverse=True)  # the ELBO: highest first


def test_a_group_missing_a_value_reports_n_for_what_it_has() -> None:
    # Hand-worked: 1, 2 and a NaN (a diverged run's metric) -> mean 1.5, sd sqrt(0.5), n 2.
    stat = summarize([1.0, 2.0, math.nan], runs=3)
    assert stat is not None
    assert (stat.mean, stat.n, stat.runs) == (1.5, 2, 3)
    assert stat.sd == pytest.approx(statistics.stdev([1.0, 2.0])) == pytest.approx(0.5**0.5)
    assert summarize([math.nan]) is None

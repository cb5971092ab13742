"""`python -m vae_lab.report` on the directories of a real sweep in which one job failed (the
`cli` tier), and on run directories written here. (Its bad inputs: test_errors.py.)"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_sweeps import job_dirs, statuses, sweep_args, sweep_dirs
from vae_lab.report import main, make_report


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> tuple[Path, str]:
    """A two-job sweep whose first job fails its value check: (sweep dir, stderr)."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_cli(sweep_args(tiny_data, "latent_dim=0,2"), cwd=cwd)
    assert result.returncode == 1, result.stderr  # the sweep says that a job failed
    (sweep,) = sweep_dirs(cwd)
    return sweep, result.stderr


def report_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vae_lab.report", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.cli  # a real sweep, and the report command, as processes
def test_a_failing_job_does_not_stop_the_others(failed_sweep: tuple[Path, str]) -> None:
    sweep, stderr = failed_sweep
    assert statuses(sweep) == {"0": "failed", "1": "completed"}
    assert re.search(r"error: job 0 \(\S*latent_dim=0\S*\) failed: latent_dim must be", stderr)
    assert "Traceback" not in stderr
    failed = json.loads((job_dirs(sweep)[0] / "metrics.json").read_text())
    assert failed["error"].startswith("latent_dim must be a positive integer, got 0")


@pytest.mark.cli  # a real sweep, and the report command, as processes
def test_report_marks_failed_unfinished_and_unreadable_runs(
    failed_sweep: tuple[Path, str], tmp_path: Path
) -> None:
    sweep = shutil.copytree(failed_sweep[0], tmp_path / "sweep")
    _, done = job_dirs(sweep)
    killed = shutil.copytree(done, sweep / "2_latent_dim=2")  # as if killed before the end
    (killed / "metrics.json").unlink()
    damaged = shutil.copytree(done, sweep / "3_latent_dim=2")
    (damaged / "metrics.json").write_text('{"status": "compl')

    result = report_cli(sweep)
    assert result.returncode == 0, result.stderr
    assert "4 runs: 1 failed, 1 completed, 1 unfinished, 1 unreadable" in result.stdout
    report = make_report(sweep)
    by_name = {run.name: run for run in report.runs}
    assert (by_name["0"].status, by_name["1"].status) == ("failed", "completed")
    assert (by_name["2"].status, by_name["3"].status) == ("unfinished", "unreadable")
    assert by_name["0"].error.startswith("latent_dim must be a positive integer")
    assert by_name["1"].metrics["test/elbo"] < 0 and by_name["1"].epochs == 1
    # Jobs 1-3 differ in nothing (copies), so the table gives them one row, as it would
    # seeds of one setting, and says how each ended.
    table = report.markdown.read_text().splitlines()
    assert table[0].startswith("| run | latent_dim | seeds | n | status | epochs | val/elbo |")
    assert table[2].startswith("| 0 | 0 | default | 1 | failed |")
    assert table[3].startswith("| 1, 2, 3 | 2 | default,default,default | 3 |")
    assert "| 1 completed, 1 unfinished, 1 unreadable |" in table[3]
    assert report.plot is not None and report.plot.is_file()  # from the one completed run


@pytest.mark.cli  # a real sweep, and the report command, as processes
def test_report_over_all_outputs_and_sorted_by_a_metric(
    failed_sweep: tuple[Path, str], tmp_path: Path
) -> None:
    outputs = failed_sweep[0].parents[2]  # <cwd>/outputs, holding multirun/<date>/<time>
    report = make_report(outputs, out=tmp_path, sort="test/elbo")
    assert [run.status for run in report.runs] == ["completed", "failed"]  # no metric: last
    assert report.runs[0].name.startswith("multirun/") and report.runs[0].name.endswith("/1")
    assert report.csv.parent == tmp_path


def _finished_run(root: Path, name: str, test: dict[str, float]) -> None:
    (root / name).mkdir(parents=True)
    summary = {"status": "completed", "epochs": 1, "test": test}
    (root / name / "metrics.json").write_text(json.dumps(summary))


@pytest.mark.parametrize(
    "metric", ["test/elbo", "test/iw_nll", "test/bpd", "test/recon", "test/loss", "test/fid"]
)
def test_sort_puts_the_best_run_first_whichever_way_the_metric_points(
    tmp_path: Path, metric: str
) -> None:
    # Three runs of one model family, b better than a better than c by every measure: the
    # highest ELBO and the lowest NLL, bits/dim, reconstruction error, loss and FID; and a
    # run whose metrics are NaN, which sorts last either way.
    numbers = {
        "a": (-245.0, 240.0, 0.44, 230.0, 245.0, 31.0),
        "b": (-235.0, 230.0, 0.42, 220.0, 235.0, 12.0),
        "c": (-255.0, 250.0, 0.46, 240.0, 255.0, 48.0),
        "d": (math.nan,) * 6,
    }
    names = ("elbo", "iw_nll", "bpd", "recon", "loss", "fid")
    for run, values in numbers.items():
        _finished_run(tmp_path, run, dict(zip(names, values, strict=True)))
    main([str(tmp_path), "--sort", metric])  # the command's entry point, in this process
    order = [row.split(",")[0] for row in (tmp_path / "report.csv").read_text().splitlines()[1:]]
    assert order == ["b", "a", "c", "d"]

"""`vae_lab.evaluate` and `vae_lab.sample` on the checkpoints of the session's tiny run, through
their entry points in this process; the new likelihoods' runs and their commands as real
processes are in the slow tier. (Their bad inputs: test_errors.py.)"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Normal, kl_divergence

from tests.conftest import run_in_process, tiny_overrides
from vae_lab import sample
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.report import make_report
from vae_lab.run import checkpoints
from vae_lab.train import train

LATENT = 4  # the trained run's


@pytest.fixture
def run_dir(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's tiny run: evaluate writes its results beside the run."""
    return shutil.copytree(trained_run, tmp_path / "trained")


def _compose(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _command(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"vae_lab.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_evaluate_prints_a_table_writes_json_and_logs_beside_the_run(
    run_dir: Path,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [f"ckpt_path={run_dir}", "eval.k=20", f"data.root={tiny_data}"]
    run_in_process("evaluate", args, tmp_path, monkeypatch)
    stdout = capsys.readouterr().out
    assert "NLL, importance-weighted, k=20" in stdout
    (out,) = tmp_path.glob("outputs/evaluate/*/*/metrics.json")
    assert (out.parent / "evaluate.log").is_file()  # the job is named evaluate (evaluate.yaml)
    metrics = json.loads(out.read_text())
    assert metrics["images"] == 100 and metrics["k"] == 20 and metrics["split"] == "test"
    numbers = [metrics[key] for key in ("elbo", "recon", "kl", "iw_nll")]
    assert all(math.isfinite(v) for v in numbers + metrics["kl_per_dim"])
    # a Bernoulli on continuous pixels: no bits/dim of 8-bit images, and the reason why
    assert metrics["bpd"] is None and metrics["bpd_8bit"] is None
    assert "not a normalized distribution" in metrics["not_applicable"]["bpd_8bit"]
    assert re.search(r"bits/dim, 8-bit images \(bpd_8bit\) +not applicable: Bernoulli", stdout)
    # The deterministic figures, recomputed from the checkpoint's encoder on the same 100
    # test images with torch.distributions and a plain variance: no vae_lab maths.
    model = checkpoints.build_model(checkpoints.load(run_dir))
    dm = FashionMNISTDataModule(root=str(tiny_data), val_size=50)
    dm.setup("test")
    with torch.no_grad():
        q = model.encode((dm.splits["test"][0], None))
    kl_per_dim = kl_divergence(Normal(q.mean, q.stddev), Normal(0.0, 1.0)).mean(0)
    assert metrics["kl_per_dim"] == pytest.approx(kl_per_dim.tolist(), rel=1e-4, abs=1e-6)
    assert metrics["kl"] == pytest.approx(float(kl_per_dim.sum()), rel=1e-4)
    variances = q.mean.double().var(0, correction=0)
    assert metrics["mean_variance_per_dim"] == pytest.approx(variances.tolist(), rel=1e-4)
    assert metrics["active_units"] == int((variances > 0.01).sum())  # Burda et al.'s threshold

    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = events.Tags()
    assert {"evaluate/test_iw_nll_k20", "evaluate/test_elbo"} <= set(tags["scalars"])
    assert "evaluate/test_kl_per_dim" in tags["histograms"]


def test_on_a_trained_model_the_iw_bound_is_tighter_than_the_elbo(trained_run: Path) -> None:
    model = checkpoints.build_model(checkpoints.load(trained_run))
    torch.manual_seed(0)
    x = torch.rand(200, 1, 28, 28).round()  # binary images: the likelihood is Bernoulli
    repeated = x.repeat(20, 1, 1, 1)
    with torch.no_grad():
        elbo = model.elbo_terms((repeated, None)).elbo
    l_1 = model.iw_log_likelihood((repeated, None), 1)
    l_50 = model.iw_log_likelihood((x, None), 50)
    noise = 4 * float(l_1.std()) / len(l_1) ** 0.5
    assert float(l_1.mean()) == pytest.approx(float(elbo.mean()), abs=noise)  # L_1 = ELBO
    assert float(l_50.mean()) > float(elbo.mean()) - noise  # NLL_iw <= -ELBO


def test_sample_writes_every_grid_at_the_size_asked(
    trained_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pictures" / "s.png"
    args = [f"ckpt_path={trained_run}/checkpoints/last.ckpt", f"data.root={tiny_data}"]
    args += [f"sample.out={out}", "sample.n=16", "sample.nrow=4", "sample.pixels=true"]
    run_in_process("sample", args, tmp_path, monkeypatch)
    tile = 28 + 2  # each image plus its white padding line
    sizes = {
        "s.png": (4 * tile + 2, 4 * tile + 2),
        "s_pixels.png": (4 * tile + 2, 4 * tile + 2),
        "s_reconstructions.png": (16 * tile + 2, 2 * tile + 2),
        "s_interpolation.png": (12 * tile + 2, tile + 2),  # x_a, 10 steps, x_b
        "s_traversals.png": (9 * tile + 2, LATENT * tile + 2),  # a row per latent dim
    }
    for name, size in sizes.items():
        with Image.open(out.parent / name) as image:
            assert image.size == size, name
    assert not (out.parent / "s_manifold.png").exists()  # 2-D latent spaces only
    assert list(tmp_path.glob("outputs/sample/*/*/sample.log"))  # the job is named sample


def test_sample_is_reproducible_with_a_seed(
    trained_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    def draw(name: str, seed: int) -> bytes:
        out = tmp_path / f"{name}.png"
        cfg = _compose(
            "sample",
            f"ckpt_path={trained_run}",
            f"data.root={tiny_data}",
            f"sample.out={out}",
            f"seed={seed}",
            "sample.pixels=true",
        )
        sample.run(cfg)
        return (tmp_path / f"{name}_pixels.png").read_bytes()

    assert draw("a", 1) == draw("b", 1)
    assert draw("c", 2) != draw("a", 1)


FID_ARGS = ["eval.k=2", "eval.fid=true", "eval.fid_samples=100", "eval.kid_subset_size=50"]


def test_evaluate_measures_fid_and_kid_beside_a_floor_and_a_ceiling(
    run_dir: Path,
    tiny_data: Path,
    tiny_classifier: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [f"ckpt_path={run_dir}", f"data.root={tiny_data}", *FID_ARGS]
    run_in_process("evaluate", [*args, f"eval.classifier={tiny_classifier}"], tmp_path, monkeypatch)
    assert "FID, 100 prior samples vs test" in capsys.readouterr().out
    (out,) = tmp_path.glob("outputs/evaluate/*/*/metrics.json")
    metrics = json.loads(out.read_text())
    names = ("fid", "kid", "fid_floor", "kid_floor", "fid_ceiling", "kid_ceiling")
    assert all(math.isfinite(metrics[n]) for n in names) and metrics["fid_samples"] == 100
    assert metrics["classifier"] == str(tiny_classifier)
    # training images are nearer the test images than independent pixels are
    assert metrics["fid_floor"] < metrics["fid_ceiling"]
    assert metrics["kid_floor"] < metrics["kid_ceiling"]
    beside = json.loads((run_dir / "evaluate_test.json").read_text())
    assert beside["fid"] == metrics["fid"]

    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert {"evaluate/test_fid", "evaluate/test_fid_floor"} <= set(events.Tags()["scalars"])
    assert "evaluate/test_fid_samples" in events.Tags()["images"]
    report = make_report(run_dir, tmp_path / "report")
    assert report.runs[0].metrics["eval/fid"] == pytest.approx(metrics["fid"])
    assert "eval/fid" in report.table and "eval/kid_ceiling" in report.table


@pytest.fixture(scope="module")
def new_likelihood_runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny conv run per new likelihood, under one directory."""
    root = tmp_path_factory.mktemp("likelihoods")
    for likelihood in ("continuous_bernoulli", "logistic"):
        out = root / likelihood
        overrides = [*tiny_overrides(tiny_data, out), "trainer.max_epochs=1", "latent_dim=2"]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[*overrides, "model=conv", f"likelihood={likelihood}"])
        train(cfg)
    return root


@pytest.mark.slow  # two runs of its own
@pytest.mark.cli  # and `python -m vae_lab.evaluate` as a real process
@pytest.mark.parametrize("likelihood", ["continuous_bernoulli", "logistic"])
def test_the_new_likelihoods_evaluate_and_sample(
    new_likelihood_runs: Path, tiny_data: Path, tmp_path: Path, likelihood: str
) -> None:
    run = new_likelihood_runs / likelihood
    args = [f"ckpt_path={run}", f"data.root={tiny_data}", "eval.k=2", "eval.limit=20"]
    result = _command("evaluate", args, tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "evaluate_test.json").read_text())
    assert metrics["bpd"] is None and metrics["bpd_8bit"] > 0  # a distribution over 8-bit images
    assert re.search(r"bits/dim, 8-bit images \(bpd_8bit\) +\d+\.\d{4}", result.stdout)

    out = tmp_path / "s.png"
    sample.run(
        _compose(
            "sample", f"ckpt_path={run}", f"data.root={tiny_data}", f"sample.out={out}",
            "sample.pixels=true",
        )
    )  # fmt: skip
    with Image.open(tmp_path / "s_pixels.png") as image:
        assert image.size == (8 * 30 + 2, 8 * 30 + 2)
    report = make_report(new_likelihood_runs, tmp_path / "report")
    row = next(r for r in report.runs if r.path == run)
    assert row.metrics["test/bpd_8bit"] > 0 and row.metrics["eval/bpd_8bit"] > 0

"""`vae_lab.evaluate` and `vae_lab.sample` on a checkpoint written by a real tiny run."""

from __future__ import annotations

import json
import math
import re
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

from tests.conftest import one_line_error, tiny_overrides
from vae_lab import evaluate, sample
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.cli.errors import UserError
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.report import make_report
from vae_lab.run import checkpoints
from vae_lab.train import train

LATENT = 3


@pytest.fixture(scope="module")
def run_dir(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for 3 short epochs on the tiny data set, with its checkpoints."""
    out = tmp_path_factory.mktemp("trained") / "run"
    overrides = [*tiny_overrides(tiny_data, out), f"latent_dim={LATENT}", "trainer.max_epochs=3"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "callbacks=none"])
    cfg.callbacks = {
        "checkpoint": {
            "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
            "dirpath": f"{out}/checkpoints",
            "save_last": True,
        }
    }
    train(cfg)
    return out


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
    run_dir: Path, tiny_data: Path, tmp_path: Path
) -> None:
    result = _command(
        "evaluate", [f"ckpt_path={run_dir}", "eval.k=20", f"data.root={tiny_data}"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "NLL, importance-weighted, k=20" in result.stdout
    (out,) = tmp_path.glob("outputs/evaluate/*/*/metrics.json")
    assert (out.parent / "evaluate.log").is_file()  # the job is named evaluate (evaluate.yaml)
    metrics = json.loads(out.read_text())
    assert metrics["images"] == 100 and metrics["k"] == 20 and metrics["split"] == "test"
    numbers = [metrics[key] for key in ("elbo", "recon", "kl", "iw_nll")]
    assert all(math.isfinite(v) for v in numbers + metrics["kl_per_dim"])
    # a Bernoulli on continuous pixels: no bits/dim of 8-bit images, and the reason why
    assert metrics["bpd"] is None and metrics["bpd_8bit"] is None
    assert "not a normalized distribution" in metrics["not_applicable"]["bpd_8bit"]
    assert re.search(
        r"bits/dim, 8-bit images \(bpd_8bit\) +not applicable: Bernoulli", result.stdout
    )
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


def test_on_a_trained_model_the_iw_bound_is_tighter_than_the_elbo(run_dir: Path) -> None:
    model = checkpoints.build_model(checkpoints.load(run_dir))
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
    run_dir: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pictures" / "s.png"
    args = [f"ckpt_path={run_dir}/checkpoints/last.ckpt", f"data.root={tiny_data}"]
    args += [f"sample.out={out}", "sample.n=16", "sample.nrow=4", "sample.pixels=true"]
    result = _command("sample", args, tmp_path)
    assert result.returncode == 0, result.stderr
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


def test_sample_is_reproducible_with_a_seed(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    def draw(name: str, seed: int) -> bytes:
        out = tmp_path / f"{name}.png"
        cfg = _compose(
            "sample",
            f"ckpt_path={run_dir}",
            f"data.root={tiny_data}",
            f"sample.out={out}",
            f"seed={seed}",
            "sample.pixels=true",
        )
        sample.run(cfg)
        return (tmp_path / f"{name}_pixels.png").read_bytes()

    assert draw("a", 1) == draw("b", 1)
    assert draw("c", 2) != draw("a", 1)


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(
    run_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["extra"] = Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    cfg = _compose("evaluate", f"ckpt_path={path}")
    with pytest.raises(UserError, match="pickled Python objects"):
        evaluate.run(cfg)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: unsafe loading runs it
    assert marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_a_checkpoint_that_does_not_fit_its_config_is_one_clear_error(
    run_dir: Path, tmp_path: Path, command: str
) -> None:
    # (files that are no checkpoint of ours at all: test_checkpoint_trust.py)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["config"]["model"]["decoder"]["latent_dim"] = LATENT + 1
    torch.save(ckpt, tmp_path / "incompatible.ckpt")
    out = [f"sample.out={tmp_path}/s.png"] if command == "sample" else []
    cfg = _compose(command, f"ckpt_path={tmp_path / 'incompatible.ckpt'}", *out)
    with pytest.raises(UserError, match="does not fit the model"):
        {"evaluate": evaluate.run, "sample": sample.run}[command](cfg)


# (override, the error line's text) for `python -m vae_lab.evaluate`: docs/errors.md's table
EVALUATE_BAD = [
    ("eval.batch_size=0", "eval.batch_size must be a positive integer, got 0; for example"),
    ("eval.limit=abc", "bad value for eval.limit: Value 'abc' of type 'str' could not be"),
    ("eval.fid=maybe", "bad value for eval.fid: Value 'maybe' is not a valid bool"),
    ("eval.fid_samples=abc", "bad value for eval.fid_samples: Value 'abc' of type 'str'"),
    ("eval.limit=0", "eval.limit must be a positive integer, got 0"),
    ("eval.k=0", "eval.k must be a positive integer, got 0; for example eval.k=5000"),
    ("eval.k=-3", "eval.k must be a positive integer, got -3"),
    ("eval.k=2.5", "bad value for eval.k: Value '2.5' of type 'float' could not be"),
    ("eval.k=true", "bad value for eval.k: Value 'True' of type 'bool' could not be"),
    ("eval.decode_batch=0", "eval.decode_batch must be a positive integer or null"),
    ("eval.split=training", "eval.split must be one of train, val, test, got 'training'"),
    ("seed=-1", "seed must be between 0 and 4294967295, got -1"),
    ("device=tpu", "device=tpu is not a torch device"),
    ("runtime.num_threads=1", "unknown key runtime; `python -m vae_lab.evaluate --cfg job` lists"),
]

# the same for `python -m vae_lab.sample`; {tmp} is the test's directory. The run's test set
# has 100 images and its latent space 3 dims.
SAMPLE_BAD = [
    ("sample.n=0", "sample.n must be a positive integer, got 0; for example sample.n=64"),
    ("sample.nrow=-1", "sample.nrow must be a positive integer, got -1"),
    ("sample.steps=0", "sample.steps must be a positive integer, got 0"),
    ("sample.n=abc", "bad value for sample.n: Value 'abc' of type 'str' could not be"),
    ("sample.pixels=maybe", "bad value for sample.pixels: Value 'maybe' is not a valid bool"),
    ("sample.span=0", "sample.span must be a positive number, got 0.0"),
    ("sample.interpolation=[0]", "sample.interpolation must be two test image indices, got [0]"),
    ("sample.interpolation=[0,-1]", "sample.interpolation's indices must be an integer >= 0"),
    ("sample.interpolation=[0,100]", "the test set has 100 images: sample.interpolation [0, 100]"),
    ("sample.traversal_image=100", "the test set has 100 images"),
    ("sample.n_reconstructions=101", "sample.n_reconstructions (101) at most 100"),
    ("sample.traversal_dims=[]", "sample.traversal_dims is empty"),
    ("sample.traversal_dims=[3]", "sample.traversal_dims must be dims in [0, 3), got [3]"),
    ("sample.traversal_dims=[-1]", "sample.traversal_dims' dims must be an integer >= 0, got -1"),
    ("sample.out=x.jpg", "sample.out must name a .png file, got 'x.jpg'"),
    ("sample.out={tmp}/a_file/s.png", "cannot write sample.out={tmp}/a_file/s.png: {tmp}/a_file"),
    ("sample.out={tmp}/d.png", "sample.out={tmp}/d.png is a directory"),
    ("sample.out=/proc/vae_lab/s.png", "cannot write sample.out=/proc/vae_lab/s.png"),
    ("zzz=1", "unknown key zzz; `python -m vae_lab.sample --cfg job` lists every key"),
]


@pytest.mark.parametrize(
    ("command", "override", "message"),
    [("evaluate", *case) for case in EVALUATE_BAD] + [("sample", *case) for case in SAMPLE_BAD],
    ids=lambda v: str(v),
)
def test_every_bad_option_is_one_line_and_writes_nothing(
    run_dir: Path,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    override: str,
    message: str,
) -> None:
    (tmp_path / "a_file").write_text("")
    (tmp_path / "d.png").mkdir()
    args = [f"ckpt_path={run_dir}", f"data.root={tiny_data}", override.format(tmp=tmp_path)]
    if command == "sample" and "sample.out" not in override:
        args.append(f"sample.out={tmp_path}/pictures/s.png")
    line = one_line_error(command, args, tmp_path, monkeypatch, capsys)
    assert message.format(tmp=tmp_path) in line
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "a_file"]


def test_a_user_error_is_one_line_exit_2_and_leaves_no_directory(tmp_path: Path) -> None:
    result = _command("evaluate", [f"ckpt_path={tmp_path}/missing.ckpt"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: checkpoint {tmp_path}/missing.ckpt does not exist; pass the path of a .ckpt file"
    ]
    assert not list(tmp_path.glob("outputs/evaluate/*/*"))


def test_a_misspelt_key_is_one_line_too(tmp_path: Path) -> None:
    result = _command("evaluate", ["eval.kk=3"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown key eval.kk; did you mean eval.k?"
    ]


FID_ARGS = ["eval.k=2", "eval.fid=true", "eval.fid_samples=100", "eval.kid_subset_size=50"]


def test_evaluate_measures_fid_and_kid_beside_a_floor_and_a_ceiling(
    run_dir: Path, tiny_data: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    args = [f"ckpt_path={run_dir}", f"data.root={tiny_data}", *FID_ARGS]
    result = _command("evaluate", [*args, f"eval.classifier={tiny_classifier}"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "FID, 100 prior samples vs test" in result.stdout
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


def test_evaluate_without_a_classifier_says_how_to_make_one(
    run_dir: Path, tiny_data: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "no-classifier"
    empty.mkdir()
    args = [f"ckpt_path={run_dir}", f"data.root={tiny_data}", *FID_ARGS]
    result = _command("evaluate", [*args, f"eval.classifier={empty}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no Fashion-MNIST classifier in {empty} (FID and KID are measured in its "
        "features); make one with `make classifier` (python -m vae_lab.classifier: a few "
        "minutes on a CPU), or pass eval.classifier=PATH"
    ]
    assert not list(tmp_path.glob("outputs/evaluate/*/*"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.fid_samples=1"], r"eval\.fid_samples must be an integer >= 2"),
        (["eval.kid_subset_size=0"], r"eval\.kid_subset_size must be an integer >= 2"),
        (["eval.kid_subset_size=500"], "is more than eval.fid_samples=100"),
        (["eval.fid_samples=5000", "eval.kid_subset_size=50"], "more than the 250 training"),
        (["eval.kid_subset_size=150", "eval.fid_samples=200"], "more than the 100 test images"),
    ],
)
def test_bad_fid_values_are_one_clear_error(
    run_dir: Path, tiny_data: Path, tiny_classifier: Path, overrides: list[str], message: str
) -> None:
    cfg = _compose(
        "evaluate",
        f"ckpt_path={run_dir}",
        f"data.root={tiny_data}",
        f"eval.classifier={tiny_classifier}",
        *FID_ARGS,
        *overrides,
    )
    with pytest.raises(UserError, match=message):
        evaluate.run(cfg)


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

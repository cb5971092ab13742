"""What the README and the docs site promise about a run, checked on real tiny runs against
numbers worked out by hand: the logging cadence, the learning-rate schedules, the binarized
protocol, `runtime.*`, and what a sweep does with a job whose objective is not finite."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ComposeFn, tiny_overrides
from tests.test_sweeps import job_dirs, sweep_dirs
from vae_lab.cli.entry import TOKEN_VAR
from vae_lab.run.sweeps import JobFailed, check_objective
from vae_lab.train import cli, train

QUIET = ("callbacks.image_grids=null", "callbacks.latent_pictures=null")  # faster epochs
LR_MONITOR = (
    "+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor",
    "+callbacks.lr.logging_interval=epoch",  # the rate in effect during each epoch
)


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.slow
def test_training_steps_are_logged_every_log_every_n_steps(
    compose_cfg: ComposeFn, tmp_path: Path
) -> None:
    # 3 epochs of 4 steps: global steps 0..11; Lightning writes after steps n with
    # (n + 1) % 5 == 0, i.e. steps 4 and 9, and the model must have logged exactly there
    train(compose_cfg("trainer.log_every_n_steps=5", "trainer.max_epochs=3", *QUIET))
    for tag in ("train/loss", "train/elbo", "train/recon", "train/kl"):
        assert [step for step, _ in _scalars(tmp_path / "run", tag)] == [4, 9], tag


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scheduler", "extra", "factors"),
    [
        # CosineAnnealingLR, T_max = max_epochs = 4: lr_e = lr_0 (1 + cos(pi e / 4)) / 2
        ("cosine", [], [(1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]),
        # ReduceLROnPlateau, patience 3, factor 0.5. A rise of 1000 nats is asked of each
        # epoch, so the ELBO "stops rising" from epoch 1: epochs 1-4 are bad, and after the
        # fourth (more than 3) the rate halves for epoch 5.
        (
            "plateau",
            ["+scheduler.threshold_mode=abs", "+scheduler.threshold=1000"],
            [1, 1, 1, 1, 1, 0.5],
        ),
    ],
)
def test_schedulers_change_the_learning_rate_as_documented(
    compose_cfg: ComposeFn, tmp_path: Path, scheduler: str, extra: list[str], factors: list[float]
) -> None:
    epochs = len(factors)
    cfg = compose_cfg(
        f"scheduler={scheduler}",
        f"trainer.max_epochs={epochs}",
        "trainer.limit_train_batches=1",
        "eval.k=0",
        *QUIET,
        *LR_MONITOR,
        *extra,
    )
    train(cfg)
    rates = [value for _, value in _scalars(tmp_path / "run", "lr-Adam")]
    assert rates == pytest.approx([1e-3 * f for f in factors], rel=1e-6)


@pytest.mark.slow
def test_binarized_data_trains_end_to_end_and_reports_bits_per_dim(
    compose_cfg: ComposeFn,
) -> None:
    summary = train(compose_cfg("data=binarized", "trainer.max_epochs=1", *QUIET))
    test = summary["test"]
    assert summary["status"] == "completed" and math.isfinite(test["iw_nll"])
    # bits per dim of 28 x 28 binary pixels: nats / (784 ln 2), worked out by hand
    assert test["bpd"] == pytest.approx(test["iw_nll"] / (784 * math.log(2)), rel=1e-5)


@pytest.mark.slow
def test_the_published_protocol_trains_end_to_end(compose_cfg: ComposeFn, tmp_path: Path) -> None:
    cfg = compose_cfg("experiment=published_nll", "trainer.max_epochs=1", "eval.k=5", *QUIET)
    summary = train(cfg)
    assert summary["status"] == "completed" and "bpd" in summary["test"]
    weights = torch.load(tmp_path / "run" / summary["checkpoint"], weights_only=True)
    # the recipe's gated MLP, 784-300-300 (h and g per layer) and z of 40 dims
    state = weights["state_dict"]
    assert state["encoder.body.0.g.weight"].shape == (300, 784)
    assert state["encoder.mean.weight"].shape == state["encoder.log_var.weight"].shape == (40, 300)
    # AdamNormGrad at the recipe's learning rate
    assert weights["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(5e-4)


@pytest.mark.slow
def test_runtime_settings_reach_torch(compose_cfg: ComposeFn) -> None:
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_num_threads(3)  # none of the values the run asks for
    torch.set_float32_matmul_precision("highest")
    try:
        train(
            compose_cfg(
                "runtime.num_threads=1",
                "runtime.float32_matmul_precision=medium",
                "runtime.flush_denormal=false",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=1",
                "eval.k=0",
                "callbacks=none",
            )
        )
        assert torch.get_num_threads() == 1
        assert torch.get_float32_matmul_precision() == "medium"
        assert float(torch.tensor([1e-39]) * 1.0) != 0.0  # a denormal, not flushed to zero
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)
        torch.set_flush_denormal(True)  # what every other run leaves


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({"val": {"elbo": math.nan}}, "val/elbo is nan (status: completed) in /run"),
        ({"val": {"elbo": -math.inf}}, "val/elbo is -inf (status: completed) in /run"),
        ({"val": {"kl": 1.0}}, r"optimized_metric=val/elbo is not among the run's metrics"),
    ],
)
def test_a_non_finite_objective_fails_the_job(summary: dict[str, object], message: str) -> None:
    with pytest.raises(JobFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_objective({**summary, "status": "completed", "run_dir": "/run"}, "val/elbo")


@pytest.mark.slow
def test_a_sweep_job_that_diverges_fails_and_the_others_go_on(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # job 0's learning rate grows a million-fold after its first epoch; job 1's does not
    args = [
        "-m",
        *(o for o in tiny_overrides(tiny_data, tmp_path) if not o.startswith("paths.")),
        "trainer.max_epochs=2",
        "eval.k=0",
        "+scheduler._target_=torch.optim.lr_scheduler.ExponentialLR",
        "+scheduler._partial_=true",
        "+scheduler.gamma=1e6,1.0",
        *QUIET,
        "hydra.sweep.subdir=${hydra.job.num}",  # all these overrides make too long a name
    ]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["vae_lab.train", *args])
    monkeypatch.setenv(TOKEN_VAR, "test")
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli()
    finally:
        GlobalHydra.instance().clear()
    assert exit_info.value.code == 1
    assert "error: job 0 " in capsys.readouterr().err
    diverged, completed = (
        json.loads((j / "metrics.json").read_text()) for j in job_dirs(sweep_dirs(tmp_path)[0])
    )
    assert diverged["status"] == "diverged" and "val" not in diverged  # no number to rank
    assert completed["status"] == "completed" and math.isfinite(completed["val"]["elbo"])

"""Each new model option on the tiny data set, the whole way: it trains, checkpoints, resumes,
evaluates and samples; a resume that changes what is trained is refused; early stopping
holds during a warm-up and keeps its count across a resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import vae_lab
from tests.conftest import QUICK, ComposeFn, compose_tiny
from vae_lab import sample
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.batches import IndexBatches
from vae_lab.evaluation.metrics import evaluate
from vae_lab.train import train

NEW_OPTIONS = [
    ("model=gated_mlp",),
    ("prior=mog", "prior.components=3"),
    ("prior=vampprior", "prior.pseudo_inputs=7"),
    ("objective=iwae", "objective.k=3"),
    ("kl_schedule=linear", "kl_schedule.warmup_epochs=3"),
    ("kl_schedule=cyclical", "kl_schedule.cycle_epochs=1"),
    ("objective.free_bits=0.2",),
    ("conditioning=label",),
]


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.slow
@pytest.mark.parametrize("option", NEW_OPTIONS, ids=lambda o: o[0])
def test_each_option_trains_resumes_evaluates_and_samples(
    tiny_data: Path, tmp_path: Path, option: tuple[str, ...]
) -> None:
    run = tmp_path / "run"
    first = train(compose_tiny(tiny_data, run, *option, *QUICK, "trainer.max_epochs=1"))
    assert first["status"] == "completed" and (run / "checkpoints" / "last.ckpt").is_file()
    resumed = train(
        compose_tiny(tiny_data, run, *option, *QUICK, "trainer.max_epochs=2", f"ckpt_path={run}")
    )
    assert (resumed["epochs"], resumed["global_step"]) == (2, 4)
    for stage in ("val", "test"):
        assert all(math.isfinite(v) for v in resumed[stage].values())
    assert {"elbo", "recon", "kl", "iw_nll"} <= set(resumed["test"])

    model = vae_lab.load(run)  # the command's loader, as a notebook calls it
    images, labels = _test_split(tiny_data)
    result = evaluate(model, IndexBatches(images[:20], labels[:20], 10, shuffle=False), k=3)
    assert result.images == 20 and math.isfinite(result.iw_nll) and math.isfinite(result.elbo)
    assert (result.kl_per_dim is None) == option[0].startswith(("prior=mog", "prior=vampprior"))

    out = tmp_path / "pictures" / "s.png"
    written = sample.run(_sample_cfg(run, tiny_data, out, "sample.n=4", "sample.nrow=2"))
    assert out in written and all(p.is_file() for p in written)


def _test_split(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from vae_lab.data.fashion_mnist import FashionMNISTDataModule

    datamodule = FashionMNISTDataModule(root=str(data_root), val_size=50)
    datamodule.load()
    return datamodule.splits["test"]


def _sample_cfg(run: Path, data_root: Path, out: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "sample",
            [f"ckpt_path={run}", f"data.root={data_root}", f"sample.out={out}", *overrides],
        )


EARLY = (
    *QUICK,
    "trainer.max_epochs=20",
    "eval.k=0",
    "callbacks.image_grids=null",
    "callbacks.latent_pictures=null",
    "callbacks.early_stopping.patience=2",
    # no epoch ever improves on the first by 1e9 nats: the count rises by one per epoch
    "callbacks.early_stopping.min_delta=1e9",
)


def test_early_stopping_is_off_by_default(compose_cfg: ComposeFn) -> None:
    assert compose_cfg().callbacks.early_stopping.patience is None


@pytest.mark.slow
def test_early_stopping_keeps_its_count_across_a_resume(tiny_data: Path, tmp_path: Path) -> None:
    # epoch 0 sets the best value, epochs 1 and 2 do not beat it: stop after epoch 2
    reference = train(compose_tiny(tiny_data, tmp_path / "reference", *EARLY))
    assert reference["epochs"] == 3
    run = tmp_path / "run"
    train(compose_tiny(tiny_data, run, *EARLY, "trainer.max_epochs=2"))  # count 1 saved
    resumed = train(compose_tiny(tiny_data, run, *EARLY, f"ckpt_path={run}"))
    assert resumed["epochs"] == 3  # a count lost in the resume would stop after epoch 4


@pytest.mark.slow
def test_early_stopping_does_not_count_during_the_warm_up(tiny_data: Path, tmp_path: Path) -> None:
    # warm-up over 3 epochs: epochs 0 and 1 train below the full beta and are not counted
    summary = train(
        compose_tiny(
            tiny_data, tmp_path / "run", *EARLY, "kl_schedule=linear", "kl_schedule.warmup_epochs=3"
        )
    )
    assert summary["epochs"] == 4
    weights = dict(_scalars(tmp_path / "run", "train/kl_weight"))
    assert weights == pytest.approx({s: min(1.0, (s // 2 + 1) / 3) for s in range(8)})


@pytest.mark.slow
def test_the_cyclical_schedule_moves_per_step(tiny_data: Path, tmp_path: Path) -> None:
    overrides = ("callbacks=none", "trainer.limit_train_batches=2", "trainer.max_epochs=3")
    schedule = ("kl_schedule=cyclical", "kl_schedule.cycle_epochs=2", "beta=2", "eval.k=0")
    train(compose_tiny(tiny_data, tmp_path / "run", *overrides, *schedule))
    weights = dict(_scalars(tmp_path / "run", "train/kl_weight"))
    # 2 steps per epoch, cycles of 2 epochs = 4 steps, rising over the first half: 0, 1, 2, 2
    assert weights == pytest.approx({s: [0.0, 1.0, 2.0, 2.0][s % 4] for s in range(6)})


@pytest.mark.slow
def test_the_issues_example_combination_runs(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    combination = ["model=conv", "prior=vampprior", "objective=iwae", "objective.k=5"]
    combination += ["kl_schedule=linear", "conditioning=label", "prior.pseudo_inputs=20"]
    summary = train(compose_tiny(tiny_data, run, *combination, *QUICK, "trainer.max_epochs=1"))
    assert summary["status"] == "completed" and math.isfinite(summary["test"]["iw_nll"])
    model = vae_lab.load(run)
    images, labels = _test_split(tiny_data)
    result = evaluate(model, IndexBatches(images[:20], labels[:20], 10, shuffle=False), k=5)
    assert math.isfinite(result.iw_nll) and result.kl_per_dim is None  # a mixture prior
    out = tmp_path / "s.png"
    assert out in sample.run(_sample_cfg(run, tiny_data, out, "sample.label=3", "sample.n=4"))


@pytest.mark.slow
def test_a_checkpoint_from_before_the_model_groups_still_loads_and_resumes(
    compose_cfg: ComposeFn, trained_run: Path, tmp_path: Path
) -> None:
    # The layout such a run saved: the prior inside `model`, no module, objective, KL
    # schedule or conditioning groups; the weights are named as today.
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    config = ckpt["hyper_parameters"]["config"]
    config["model"]["prior"] = config.pop("prior")
    for group in ("module", "objective", "kl_schedule", "conditioning"):
        del config[group]
    del ckpt["hyper_parameters"]["num_classes"]
    old = tmp_path / "run" / "checkpoints" / "last.ckpt"
    old.parent.mkdir(parents=True)
    torch.save(ckpt, old)

    model, today = vae_lab.load(old), vae_lab.load(trained_run)
    for name, weight in today.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weight)
    resumed = train(compose_cfg(f"ckpt_path={old}", "latent_dim=4", "trainer.max_epochs=2"))
    assert resumed["status"] == "completed" and resumed["epochs"] == 2

"""Whole runs on tiny IDX files through the real reader: files, events, metrics, learning. The
fast tier reads the session's one trained run; the runs of their own are `slow`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Normal, kl_divergence

from tests.conftest import ComposeFn
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.run import checkpoints
from vae_lab.train import train

STAGE_TAGS = {f"{stage}/{name}" for stage in ("val", "test") for name in ("elbo", "recon", "kl")}
TRAIN_TAGS = {"train/elbo", "train/recon", "train/kl", "train/loss"}
IMAGE_TAGS = {"val/reconstructions", "val/samples", "latent/traversals", "latent/interpolation"}


def _events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0}
    )
    events.Reload()
    return events


LIKELIHOODS = [
    "bernoulli", "gaussian", "gaussian_learned", "gaussian_pixel_sigma", "continuous_bernoulli",
    "logistic",
]  # fmt: skip


def _assert_a_complete_run_directory(run_dir: Path, likelihood: str, epochs: int) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    # kl_z1: the KL term of each latent layer (a single-latent model has one, the whole KL)
    assert set(metrics["val"]) == {"elbo", "recon", "kl", "kl_z1"}
    assert metrics["val"]["kl_z1"] == metrics["val"]["kl"]
    # the test stage adds the importance-weighted bound, and bits/dim of the 8-bit images
    # for every likelihood that is a distribution over them; the Bernoulli says why not
    bpd = set() if likelihood == "bernoulli" else {"bpd_8bit"}
    assert set(metrics["test"]) == {"elbo", "recon", "kl", "kl_z1", "iw_nll"} | bpd
    assert ("bpd_8bit" in metrics["not_applicable"]) == (likelihood == "bernoulli")
    if bpd:  # a bound on a code length: positive (finite: checked below)
        assert metrics["test"]["bpd_8bit"] > 0
    for stage in ("val", "test"):
        assert all(math.isfinite(v) for v in metrics[stage].values())
        assert metrics[stage]["kl"] >= 0
    assert metrics["epochs"] == epochs and metrics["global_step"] == epochs * 4  # 4 batches each

    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / metrics["checkpoint"]).is_file()
    assert metrics["checkpoint"].startswith("checkpoints/best-epoch")
    assert (run_dir / "config.yaml").is_file()

    events = _events(run_dir)
    tags = events.Tags()
    assert set(tags["scalars"]) >= STAGE_TAGS | TRAIN_TAGS
    assert set(tags["images"]) >= IMAGE_TAGS
    assert {"test/iw_nll", "latent/active_units", "latent/active_units_z1"} <= set(tags["scalars"])
    assert "latent/kl_per_dim" in tags["histograms"]
    assert not {"latent/manifold", "latent/posterior_means"} & set(tags["images"])  # 2-D only
    assert len(events.Images("val/samples")) == epochs  # one grid per validation epoch
    assert {f"hp/test_{n}" for n in ("elbo", "recon", "kl")} <= set(tags["scalars"])
    hparams_tags = events.PluginTagToContent("hparams")
    assert b"hp/test_elbo" in b"".join(hparams_tags.values())  # the metric the hparams tab shows
    for name in ("reconstructions", "samples"):
        assert (run_dir / "images" / f"{name}.png").is_file()
    # the embedding projector: its config, and the means, labels and sprites it points to
    projector = (run_dir / "projector_config.pbtxt").read_text()
    for name in ("tensors.tsv", "metadata.tsv", "sprite.png"):
        assert len(list(run_dir.glob(f"*/test_posterior_mean/{name}"))) == 1, name
    assert "test_posterior_mean" in projector


def test_the_trained_run_leaves_a_complete_run_directory(trained_run: Path) -> None:
    _assert_a_complete_run_directory(trained_run, "bernoulli", epochs=1)  # the default MLP


@pytest.mark.slow  # ten runs of its own
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_every_model_and_likelihood_leaves_a_complete_run_directory(
    compose_cfg: ComposeFn, tmp_path: Path, model: str, likelihood: str
) -> None:
    train(compose_cfg(f"model={model}", f"likelihood={likelihood}", "latent_dim=3"))
    _assert_a_complete_run_directory(tmp_path / "run", likelihood, epochs=2)


def test_checkpoint_loads_weights_only_and_holds_its_config(trained_run: Path) -> None:
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert hparams["config"]["latent_dim"] == 4 and hparams["input_shape"] == [1, 28, 28]
    # the encoder's last layer gives a mean and a log-variance per latent dim
    *_, last = (k for k in ckpt["state_dict"] if k.startswith("encoder.") and "weight" in k)
    assert ckpt["state_dict"][last].shape[0] == 2 * 4


@pytest.mark.slow  # 200 epochs
def test_overfits_one_batch(compose_cfg: ComposeFn, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "debug=overfit", "trainer.max_epochs=200", "callbacks=none", "optimizer.lr=3e-3"
    )
    train(cfg)
    losses = [e.value for e in _events(tmp_path / "run").Scalars("train/loss")]
    assert len(losses) == 200
    # The Bernoulli cross-entropy of continuous pixels cannot fall below their entropy.
    dm = FashionMNISTDataModule(root=cfg.data.root, val_size=cfg.data.val_size, batch_size=32)
    dm.setup("fit")
    x = dm.splits["train"][0][:32].float() / 255  # the batch overfit_batches=1 trains on
    floor = (
        -(x * x.clamp_min(1e-12).log() + (1 - x) * (1 - x).clamp_min(1e-12).log())
        .flatten(1)
        .sum(1)
        .mean()
    )
    excess_start, excess_end = losses[0] - floor.item(), losses[-1] - floor.item()
    assert excess_end < 0.2 * excess_start, (excess_start, excess_end)


def test_loss_weights_kl_by_beta(compose_cfg: ComposeFn) -> None:
    from vae_lab.data.batches import Batch
    from vae_lab.models.build import build_vae

    cfg = compose_cfg("beta=4.0")
    model = build_vae(cfg, (1, 28, 28))
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(0)
    terms = model.elbo_terms((x, None))
    torch.manual_seed(0)
    model.log_dict = lambda *a, **k: None  # type: ignore[method-assign] # no trainer attached
    loss = model.training_step(Batch(x, torch.zeros(8, dtype=torch.long)), 0)
    torch.testing.assert_close(loss, (terms.recon + 4.0 * terms.kl).mean())


def posterior_kl(checkpoint: Path, images: torch.Tensor) -> float:
    """KL(q(z|x) || N(0, I)) of a checkpoint's encoder, averaged over uint8 `images`, by
    torch.distributions: a number from outside vae_lab's own KL code. Deterministic (no
    sampling), so it must equal what a run reports for the same weights and images."""
    model = checkpoints.build_model(checkpoints.load(checkpoint))
    with torch.no_grad():
        q = model.encode((images, None))  # uint8 images: the model scales them to [0, 1]
        kl = kl_divergence(Normal(q.mean, q.stddev), Normal(0.0, 1.0)).sum(-1)
    return float(kl.double().mean())


def tiny_splits(tiny_data: Path) -> dict[str, torch.Tensor]:
    """The tiny run's val and test images, split as `tiny_overrides` splits them."""
    dm = FashionMNISTDataModule(root=str(tiny_data), val_size=50)
    dm.setup("fit")
    return {split: dm.splits[split][0] for split in ("val", "test")}


@pytest.mark.slow  # a run of its own
def test_runs_in_double_precision(compose_cfg: ComposeFn, tmp_path: Path, tiny_data: Path) -> None:
    summary = train(compose_cfg("trainer.precision=64-true", "trainer.max_epochs=1"))
    best = tmp_path / "run" / summary["checkpoint"]
    weights = torch.load(best, weights_only=True)["state_dict"].values()
    assert all(w.dtype == torch.float64 for w in weights if w.is_floating_point())
    images = tiny_splits(tiny_data)["test"]
    assert summary["test"]["kl"] == pytest.approx(posterior_kl(best, images), rel=1e-5)


@pytest.mark.slow  # a run of its own
def test_metrics_json_holds_the_best_checkpoints_numbers_not_the_last_epochs(
    compose_cfg: ComposeFn, tmp_path: Path, tiny_data: Path
) -> None:
    # "best" made the lowest validation ELBO: the first epoch, of three that keep learning;
    # a second checkpoint callback keeps every epoch's weights to compare with
    run = tmp_path / "run"
    every_epoch = "+callbacks.every_epoch"
    train(
        compose_cfg(
            "trainer.max_epochs=3",
            "callbacks.model_checkpoint.mode=min",
            f"{every_epoch}._target_=lightning.pytorch.callbacks.ModelCheckpoint",
            f"{every_epoch}.dirpath={run}/epochs",
            f"{every_epoch}.save_top_k=-1",
            "callbacks.image_grids=null",
            "callbacks.latent_pictures=null",
            "callbacks.embedding_projector=null",
        )
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["checkpoint"] == "checkpoints/best-epoch000.ckpt"
    splits = tiny_splits(tiny_data)
    for stage in ("val", "test"):
        expected = posterior_kl(run / metrics["checkpoint"], splits[stage])
        assert metrics[stage]["kl"] == pytest.approx(expected, rel=1e-5)
    (third,) = (run / "epochs").glob("epoch=2-*.ckpt")  # Lightning's name: epoch=2-step=12
    last_epoch = posterior_kl(third, splits["val"])
    assert abs(metrics["val"]["kl"] - last_epoch) > 0.01  # the last epoch's differ
    # last.ckpt follows every epoch although the best stayed at the first (Lightning's own
    # save_last would have left it there): it holds the final step, as resume needs
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == metrics["global_step"] == 12


@pytest.mark.slow  # a run of its own
def test_a_two_dimensional_latent_space_gets_its_manifold_and_scatter(
    compose_cfg: ComposeFn, tmp_path: Path
) -> None:
    train(compose_cfg("latent_dim=2", "trainer.max_epochs=1"))
    events = _events(tmp_path / "run")
    images = {t: events.Images(t) for t in ("latent/manifold", "latent/posterior_means")}
    manifold = images["latent/manifold"][-1]
    assert (manifold.width, manifold.height) == (20 * 30 + 2, 20 * 30 + 2)  # 20x20 tiles
    assert len(images["latent/posterior_means"]) == 1  # the scatter, once per epoch

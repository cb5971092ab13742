"""When the picture callbacks draw (callbacks/cadence.py), read back from real runs: the
TensorBoard events' steps, the PNG files, and the epoch timer's whole-epoch seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.utils import save_image

import vae_lab
from tests.conftest import ComposeFn
from vae_lab.evaluation import pictures
from vae_lab.train import train

TIMER = "+callbacks.epoch_timer._target_=vae_lab.callbacks.timing.EpochTimer"


def _image_steps(run_dir: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return [event.step for event in events.Images(tag)]


def _run(compose_cfg: ComposeFn, tmp_path: Path, epochs: int, every: int, *extra: str) -> Path:
    train(
        compose_cfg(
            *extra,
            f"trainer.max_epochs={epochs}",
            f"callbacks.image_grids.every_n_epochs={every}",
            f"callbacks.latent_pictures.every_n_epochs={every}",
            "callbacks.embedding_projector=null",
            "eval.k=0",
            "latent_dim=2",
            TIMER,
        )
    )
    return tmp_path / "run"


TAGS = ("val/samples", "val/reconstructions", "latent/traversals", "latent/manifold")


def test_pictures_on_the_cadence_the_last_of_the_final_model_and_whole_epochs_timed(
    compose_cfg: ComposeFn, tmp_path: Path
) -> None:
    """One run of 5 epochs (4 steps each: they end at steps 4, 8, ..., 20) drawing every 2nd:
    after epoch 0, after epochs 1 and 3, and at the end (epoch 4, not due)."""
    run_dir = _run(compose_cfg, tmp_path, epochs=5, every=2)
    for tag in TAGS:
        assert _image_steps(run_dir, tag) == [4, 8, 16, 20], tag

    # the end's drawing shows the final weights: checkpoints/last.ckpt, drawn again
    model = vae_lab.load(run_dir)
    seed = OmegaConf.load(run_dir / "config.yaml").seed  # what ImageGrids seeds its draws with
    grid = pictures.samples(model, 64, 8, torch.Generator().manual_seed(seed))
    expected = tmp_path / "expected.png"
    save_image(grid, expected, format="png")
    written = np.asarray(Image.open(run_dir / "images" / "samples.png"))
    assert np.array_equal(written, np.asarray(Image.open(expected)))

    timing = json.loads((run_dir / "timing.json").read_text())
    whole, training = timing["epoch_s"], timing["train_s_per_epoch"]
    assert len(whole) == 4 and len(training) == 5  # start-to-start: one fewer than epochs
    # a whole epoch holds its training, then validation, pictures and checkpoints
    assert all(w > t for w, t in zip(whole, training, strict=False))
    started = (run_dir / "config.yaml").stat().st_mtime
    ended = (run_dir / "metrics.json").stat().st_mtime
    assert sum(whole) < ended - started


@pytest.mark.slow  # a run each
@pytest.mark.parametrize(
    ("epochs", "every", "extra", "steps"),
    [
        (5, 1, (), [4, 8, 12, 16, 20]),  # every validation epoch; the end is drawn already
        (4, 2, (), [4, 8, 16]),  # the last epoch (3) is a 2nd one: nothing more at the end
        (3, 5, (), [4, 12]),  # the first epoch, then the end
        # validated after epochs 1, 3, 5 (steps 8, 16, 24): the first validation, then the end
        (6, 5, ("trainer.check_val_every_n_epoch=2",), [8, 24]),
    ],
)
def test_other_cadences(
    compose_cfg: ComposeFn,
    tmp_path: Path,
    epochs: int,
    every: int,
    extra: tuple[str, ...],
    steps: list[int],
) -> None:
    run_dir = _run(compose_cfg, tmp_path, epochs, every, *extra)
    for tag in TAGS:
        assert _image_steps(run_dir, tag) == steps, tag


def test_a_cadence_below_one_is_refused(compose_cfg: ComposeFn) -> None:
    from vae_lab.cli.errors import UserError

    with pytest.raises(UserError, match="every_n_epochs must be a positive integer, got 0"):
        train(compose_cfg("callbacks.image_grids.every_n_epochs=0"))

"""The class-conditional VAE: the label reaches the decoder of every architecture,
`sample.label` draws that class, and the sample grid has a row per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.utils import make_grid

import vae_lab
from tests.conftest import ComposeFn, compose_tiny
from tests.test_model_families import _sample_cfg
from vae_lab import sample
from vae_lab.cli.errors import UserError
from vae_lab.models.build import build_vae
from vae_lab.train import train

TILE = 28 + 2  # an image and its padding line in a grid


@pytest.mark.parametrize("model", ["mlp", "conv", "gated_mlp"])
def test_a_conditional_decoder_output_changes_with_the_label(
    compose_cfg: ComposeFn, model: str
) -> None:
    vae = build_vae(
        compose_cfg(f"model={model}", "conditioning=label", "latent_dim=4"), (1, 28, 28)
    )
    z = torch.randn(5, 4)
    three, four = vae.decode(z, 3), vae.decode(z, torch.full((5,), 4))
    assert not torch.allclose(three, four)
    torch.testing.assert_close(vae.decode(z, torch.full((5,), 3)), three)
    with pytest.raises(ValueError, match="class-conditional"):
        vae.decode(z)  # no label: refused, not guessed


def test_an_unconditional_model_ignores_labels(compose_cfg: ComposeFn) -> None:
    vae = build_vae(compose_cfg("latent_dim=4"), (1, 28, 28))
    z = torch.randn(5, 4)
    torch.testing.assert_close(vae.decode(z, 3), vae.decode(z))


@pytest.fixture(scope="module")
def conditional_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("conditional") / "run"
    overrides = ["conditioning=label", "latent_dim=3", "trainer.max_epochs=1", "eval.k=0"]
    overrides += ["callbacks.latent_pictures=null", "callbacks.embedding_projector=null"]
    train(compose_tiny(tiny_data, run, *overrides))
    return run


def _png(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


@pytest.mark.slow  # a conditional run of its own
def test_sample_label_draws_that_class(
    conditional_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s.png"
    sample.run(
        _sample_cfg(conditional_run, tiny_data, out, "sample.n=6", "sample.label=3", "seed=5")
    )
    # the same draws of z, decoded by hand as class 3 and as class 4
    model = vae_lab.load(conditional_run)
    z = model.prior.sample(6, torch.Generator().manual_seed(5))
    grids = {y: make_grid(model.decode(z, y), nrow=8, pad_value=1.0) for y in (3, 4)}
    written = _png(out)
    assert (written - grids[3]).abs().max() <= 1 / 255 + 1e-6  # PNG rounds to 8 bits
    assert (written - grids[4]).abs().max() > 3 / 255  # another class: another image


@pytest.mark.slow  # a conditional run of its own
def test_without_a_label_the_sample_grid_has_a_row_per_class(
    conditional_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s.png"
    sample.run(_sample_cfg(conditional_run, tiny_data, out, "sample.nrow=5"))
    with Image.open(out) as image:
        assert image.size == (5 * TILE + 2, 10 * TILE + 2)  # 10 classes, 5 draws each
    events = EventAccumulator(str(conditional_run), size_guidance={"images": 0})
    events.Reload()
    grid = events.Images("val/samples")[-1]
    assert (grid.width, grid.height) == (8 * TILE + 2, 10 * TILE + 2)  # TensorBoard's too


@pytest.mark.slow  # a conditional run of its own
@pytest.mark.parametrize(
    ("label", "message"),
    [("10", r"sample.label must be a class index in \[0, 10\), got 10"), ("-1", "class index")],
)
def test_a_label_out_of_range_is_refused(
    conditional_run: Path, tiny_data: Path, tmp_path: Path, label: str, message: str
) -> None:
    cfg = _sample_cfg(conditional_run, tiny_data, tmp_path / "s.png", f"sample.label={label}")
    with pytest.raises(UserError, match=message):
        sample.run(cfg)

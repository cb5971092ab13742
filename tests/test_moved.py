"""Runs saved before the run and command-line plumbing became packages (`vae_lab.run`,
`vae_lab.cli`) name the old modules in their saved config; they still load, evaluate and
resume (`vae_lab.run.moved`)."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import torch

import vae_lab
from tests.conftest import ComposeFn, run_in_process
from vae_lab.cli.errors import UserError
from vae_lab.run import allowed_targets
from vae_lab.run.moved import MOVED, current_name, renamed
from vae_lab.train import train

OLD_WRITER = "vae_lab.checkpoint_io.AtomicCheckpointIO"  # what every run saved before the move
NEW_WRITER = "vae_lab.run.checkpoint_io.AtomicCheckpointIO"


@pytest.mark.parametrize(("old", "new"), MOVED.items())
def test_each_row_names_a_module_gone_and_the_one_that_holds_it_now(old: str, new: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
    importlib.import_module(new)
    assert current_name(f"{old}.Name") == f"{new}.Name"


def test_only_targets_are_renamed_and_only_moved_modules() -> None:
    saved = {
        "trainer": {"plugins": [{"_target_": OLD_WRITER}], "note": OLD_WRITER},
        "data": {"_target_": "vae_lab.data.fashion_mnist.FashionMNISTDataModule"},
        "x": {"_target_": "vae_lab.errorsX.Y"},  # a prefix of a moved name, not the module
    }
    assert renamed(saved) == {
        "trainer": {"plugins": [{"_target_": NEW_WRITER}], "note": OLD_WRITER},
        "data": {"_target_": "vae_lab.data.fashion_mnist.FashionMNISTDataModule"},
        "x": {"_target_": "vae_lab.errorsX.Y"},
    }
    assert saved["trainer"]["plugins"][0]["_target_"] == OLD_WRITER  # the input is untouched


@pytest.fixture
def old_run(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of a tiny run, its checkpoints and config files written as before the move."""
    run = tmp_path / "old_run"
    shutil.copytree(trained_run, run)
    for ckpt_file in (run / "checkpoints").glob("*.ckpt"):
        ckpt = torch.load(ckpt_file, weights_only=True)
        plugins = ckpt["hyper_parameters"]["config"]["trainer"]["plugins"]
        assert plugins == [{"_target_": NEW_WRITER}]
        plugins[0]["_target_"] = OLD_WRITER
        torch.save(ckpt, ckpt_file)
    for config in (run / "config.yaml", run / ".hydra" / "config.yaml"):
        if config.is_file():
            config.write_text(config.read_text().replace(NEW_WRITER, OLD_WRITER))
    return run


def _saved_writer(run: Path) -> str:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return str(ckpt["hyper_parameters"]["config"]["trainer"]["plugins"][0]["_target_"])


def test_an_old_run_loads_and_evaluates(
    old_run: Path,
    trained_run: Path,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ckpt = torch.load(old_run / "checkpoints" / "last.ckpt", weights_only=True)
    with pytest.raises(UserError, match=f"_target_ '{OLD_WRITER}'"):
        allowed_targets.check(ckpt["hyper_parameters"])  # what the table saves it from

    model, today = vae_lab.load(old_run), vae_lab.load(trained_run)
    for name, weight in today.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weight)

    # `python -m vae_lab.evaluate ckpt_path=<old run>`, through its entry point
    args = [f"ckpt_path={old_run}", f"data.root={tiny_data}", "eval.k=2", "eval.limit=20"]
    run_in_process("evaluate", args, tmp_path, monkeypatch)
    (out,) = tmp_path.glob("outputs/evaluate/*/*/metrics.json")
    assert (out.parent / "evaluate.log").is_file()  # the job keeps its name
    assert (old_run / "evaluate_test.json").is_file()


@pytest.mark.slow  # trains an epoch more
def test_an_old_run_resumes_and_its_checkpoints_then_name_todays_module(
    old_run: Path, compose_cfg: ComposeFn
) -> None:
    resumed = train(compose_cfg(f"ckpt_path={old_run}", "latent_dim=4", "trainer.max_epochs=2"))
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    assert Path(resumed["run_dir"]).resolve() == old_run.resolve()
    assert _saved_writer(old_run) == NEW_WRITER  # its checkpoints now name today's module


def test_a_run_saved_with_free_bits_in_its_kl_schedule_loads_evaluates_and_resumes(
    trained_run: Path, tiny_data: Path, compose_cfg: ComposeFn, tmp_path: Path
) -> None:
    """Before free bits moved to the objective, every run saved `kl_schedule.free_bits`."""
    run = tmp_path / "free_bits_run"
    shutil.copytree(trained_run, run)
    for ckpt_file in (run / "checkpoints").glob("*.ckpt"):
        ckpt = torch.load(ckpt_file, weights_only=True)
        config = ckpt["hyper_parameters"]["config"]
        config["kl_schedule"]["free_bits"] = config["objective"].pop("free_bits")
        torch.save(ckpt, ckpt_file)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert "free_bits" not in saved["hyper_parameters"]["config"]["objective"]

    model, today = vae_lab.load(run), vae_lab.load(trained_run)
    assert model.objective.free_bits == 0.0 and not hasattr(model.kl_schedule, "free_bits")
    batch = (torch.rand(4, 1, 28, 28), None)
    torch.manual_seed(0)
    expected = today.iw_log_likelihood(batch, k=3)
    torch.manual_seed(0)
    torch.testing.assert_close(model.iw_log_likelihood(batch, k=3), expected)

    resumed = train(compose_cfg(f"ckpt_path={run}", "latent_dim=4", "trainer.max_epochs=2"))
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    assert Path(resumed["run_dir"]).resolve() == run.resolve()

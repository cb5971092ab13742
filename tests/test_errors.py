"""Every way a user can go wrong gets one clear `error:` line and exit status 2, before any
training and without results: one test per bad input (docs/errors.md, "Errors and recovery").

Composition errors go through the real command (`cli()`) in this process, which is fast
because they fail before anything is imported; value, directory and checkpoint errors go
through `train()`. The data files' errors are in test_data.py, test_idx.py and test_cli.py,
which also runs some of these as subprocesses.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import ComposeFn
from vae_lab.cli.entry import TOKEN_VAR
from vae_lab.cli.errors import USER_ERROR_EXIT, UserError
from vae_lab.run import directory as run_dirs
from vae_lab.train import cli, train

Capture = pytest.CaptureFixture[str]


def _cli_error(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> str:
    """Run the command in this process; return its one `error:` line, checking the exit."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["vae_lab.train", *args])
    monkeypatch.setenv(TOKEN_VAR, "test")  # cli() sets it; monkeypatch puts it back
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli()
    finally:
        GlobalHydra.instance().clear()
    assert exit_info.value.code == USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


COMPOSITION_ERRORS = [
    (
        ["model=transformer"],
        "unknown option model=transformer; the options of 'model' are: conv, gated_mlp, mlp",
    ),
    (["debug=nope"], "unknown option debug=nope; the options of 'debug' are: fdr, limit, overfit"),
    (["trainer.max_epoch=1"], "unknown key trainer.max_epoch; did you mean trainer.max_epochs?"),
    (["optimizer.lrr=1"], "unknown key optimizer.lrr; did you mean optimizer.lr?"),
    (["data.zzz=1"], "unknown key data.zzz; `python -m vae_lab.train --cfg job` lists"),
    (["kl_schedule.free_bits=0.2"], "kl_schedule.free_bits is now objective.free_bits; set"),
    (["latent_dim=abc"], "bad value for latent_dim: Value 'abc' of type 'str' could not be"),
    (["data.batch_size=1.5"], "bad value for data.batch_size: Value '1.5' of type 'float'"),
    (["data.download=maybe"], "bad value for data.download: Value 'maybe' is not a valid bool"),
    (["latent_dim=null"], "bad value for latent_dim: field 'latent_dim' is not Optional"),
    (["latent_dim=["], "cannot parse the override 'latent_dim=['"),
    (["--config-name", "nope"], "no config named 'nope'"),
    (["-m", "model=transformer,mlp"], "unknown option model=transformer"),
]


@pytest.mark.parametrize(("args", "message"), COMPOSITION_ERRORS, ids=lambda v: str(v))
def test_composition_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture, args: list[str], message: str
) -> None:
    assert message in _cli_error(args, tmp_path, monkeypatch, capsys)
    assert not (tmp_path / "outputs" / "runs").exists()  # failed before Hydra made a directory


def test_unwritable_run_directory_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    (tmp_path / "a_file").write_text("")
    line = _cli_error(
        [f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"], tmp_path, monkeypatch, capsys
    )
    assert f"output directory ({tmp_path / 'a_file' / 'run'}): Not a directory" in line
    assert "hydra.run.dir=DIR" in line


# Values the types allow but a run cannot use, beyond those in test_configs.py.
BAD_VALUES = [
    ("beta=nan", "beta must be >= 0 and finite"),
    ("beta=inf", "beta must be >= 0 and finite"),
    ("optimizer.lr=inf", "optimizer.lr must be a positive number, got inf"),
    ("optimizer.lr=nan", "optimizer.lr must be a positive number, got nan"),
    ("seed=-1", "seed must be between 0 and 4294967295, got -1"),
    ("seed=4294967296", "seed must be between 0 and 4294967295"),
    ("data.eval_batch_size=0", "data.eval_batch_size must be a positive number"),
    ("data.val_size=300", r"data.val_size=300 must be between 1 and 299"),
    ("trainer.max_epochs=-2", "trainer.max_epochs must be a positive integer"),
    ("trainer.deterministic=maybe", "trainer.deterministic must be true, false or warn"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be a number >= 0"),
    ("runtime.num_threads=0", "runtime.num_threads must be a positive integer"),
    ("runtime.float32_matmul_precision=low", "runtime.float32_matmul_precision must be"),
    ("+lr=0.1", "unknown key lr: nothing reads it"),
    ("+model.hidden=8", "unknown key model.hidden: nothing reads it"),
    ("+runtime.threads=2", "unknown key runtime.threads: nothing reads it"),
    ("+kl_schedule.free_bits=0.2", "kl_schedule.free_bits is now objective.free_bits; set"),
    ("objective.free_bits=-1", "objective.free_bits must be >= 0 and finite"),
    ("latent_dim=${nope}", "latent_dim cannot be resolved: Interpolation key 'nope' not found"),
    ("likelihood=gaussian likelihood.sigma=0", "likelihood.sigma must be positive"),
    ("trainer.precision=bogus", "could not build the run from its config"),
    ("+trainer.no_such_arg=1", "could not build the run from its config"),
    ("optimizer.weight_decay=-1", "optimizer or scheduler config rejected"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES, ids=lambda v: str(v))
def test_bad_value_is_refused_before_training(
    compose_cfg: ComposeFn, tmp_path: Path, overrides: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        train(compose_cfg(*overrides.split()))
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.json"))


def test_output_directory_that_cannot_be_made(compose_cfg: ComposeFn, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match=r"cannot write to the output directory .*a_file/run"):
        train(compose_cfg(f"paths.output_dir={tmp_path / 'a_file' / 'run'}"))


def test_unwritable_place_inside_the_run(compose_cfg: ComposeFn, tmp_path: Path) -> None:
    # The checkpoint directory's name taken by a file: the run cannot write its checkpoints.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("")
    with pytest.raises(UserError, match=r"cannot write .*checkpoints: File exists"):
        train(compose_cfg())
    assert not (tmp_path / "run" / "metrics.json").exists()


# --- checkpoints given to ckpt_path -------------------------------------------------------


def _resume(compose_cfg: ComposeFn, ckpt: Path | str, *overrides: str) -> None:
    train(compose_cfg(f"ckpt_path={ckpt}", "latent_dim=4", "trainer.max_epochs=2", *overrides))


# Files that are not a checkpoint at all, and checkpoints whose config names code: for
# every command, in test_checkpoint_trust.py.


def test_checkpoint_of_another_setting(
    compose_cfg: ComposeFn, trained_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=r"latent_dim: checkpoint 4, command 8.*repeat the"):
        train(compose_cfg(f"ckpt_path={trained_run}", "latent_dim=8"))
    with pytest.raises(UserError, match=r"optimizer.lr: checkpoint 0.001, command 0.01"):
        _resume(compose_cfg, trained_run, "optimizer.lr=0.01")


def test_checkpoint_whose_weights_do_not_fit(
    compose_cfg: ComposeFn, trained_run: Path, tmp_path: Path
) -> None:
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name] = torch.zeros(3)  # as if written by another version
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match=f"does not fit the model of this config.*{name}"):
        _resume(compose_cfg, tmp_path / "other.ckpt")


def test_checkpoint_without_training_state(
    compose_cfg: ComposeFn, trained_run: Path, tmp_path: Path
) -> None:
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    del ckpt["optimizer_states"], ckpt["loops"]  # a weights-only export
    torch.save(ckpt, tmp_path / "weights.ckpt")
    with pytest.raises(UserError, match=r"no training state \(optimizer_states, loops missing\)"):
        _resume(compose_cfg, tmp_path / "weights.ckpt")


def test_run_directory_in_use(compose_cfg: ComposeFn, trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    with run_dirs.held(run), pytest.raises(UserError, match=r"is in use by process \d+"):
        _resume(compose_cfg, run)
    assert not (run / run_dirs.LOCK_NAME).exists()  # released, and gone, with its holder


def test_failed_resume_leaves_the_run_as_it_was(
    compose_cfg: ComposeFn, trained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="Fashion-MNIST IDX files not found"):
        _resume(compose_cfg, run, f"data.root={tmp_path / 'nowhere'}")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

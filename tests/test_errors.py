"""Every way a user can go wrong gets one clear `error:` line and exit status 2, before any
work and without leaving files behind: one table of bad inputs for every command (the
README's "Errors and recovery"), each run through the command's real entry point in this
process (`one_line_error`). A few of them run as real processes too, in test_cli.py (the
`cli` tier); files given as checkpoints are in test_checkpoint_trust.py, the IDX reader's
own errors in test_idx.py.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from tests.conftest import ComposeFn, one_line_error, tiny_overrides
from vae_lab.cli.errors import UserError
from vae_lab.run import directory as run_dirs
from vae_lab.train import train

TINY = "{tiny}"  # an argument that stands for the tiny overrides (tiny data, output in {tmp}/run)
# What the evaluate and sample cases start from; a case's own arguments come after and win.
DEFAULTS = {
    "evaluate": ["ckpt_path={run}", "data.root={data}"],
    "sample": ["ckpt_path={run}", "data.root={data}", "sample.out={tmp}/pictures/s.png"],
    "classifier": ["data.root={data}", "data.val_size=50", "out_dir={tmp}/classifier"],
}
FID = ["eval.k=2", "eval.fid=true", "eval.fid_samples=100", "eval.kid_subset_size=50"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]


class Case(NamedTuple):
    command: str
    args: list[str]
    says: str | tuple[str, ...]  # what the error line holds ({tmp}, {run} filled in)
    setup: str | None = None  # a name in SETUPS: files the case needs in {tmp}
    leaves: str | None = None  # a glob of the files it is known to leave behind


def _damaged(tmp: Path, data: Path, how: str) -> None:
    root = shutil.copytree(data, tmp / "data")
    target = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if how == "truncate":
        target.write_bytes(gzip.compress(raw[: len(raw) - 100]))
    elif how == "corrupt_gzip":
        target.write_bytes(target.read_bytes()[:200])
    else:  # a wrong magic number
        target.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))


def _edited_checkpoint(tmp: Path, run: Path, name: str, edit: Callable[[dict], None]) -> None:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp / name)


def _other_weights(ckpt: dict) -> None:
    ckpt["state_dict"][next(iter(ckpt["state_dict"]))] = torch.zeros(3)  # another version's


def _no_training_state(ckpt: dict) -> None:
    del ckpt["optimizer_states"], ckpt["loops"]  # a weights-only export


def _other_latent_dim(ckpt: dict) -> None:
    ckpt["hyper_parameters"]["config"]["model"]["decoder"]["latent_dim"] = 5


# (tmp, tiny data, trained run) -> None
SETUPS: dict[str, Callable[[Path, Path, Path], None]] = {
    **{
        f"data:{how}": lambda tmp, data, run, how=how: _damaged(tmp, data, how)
        for how in ("truncate", "corrupt_gzip", "bad_magic")
    },
    "other.ckpt": lambda tmp, data, run: _edited_checkpoint(tmp, run, "other.ckpt", _other_weights),
    "weights.ckpt": lambda tmp, data, run: _edited_checkpoint(
        tmp, run, "weights.ckpt", _no_training_state
    ),
    "incompatible.ckpt": lambda tmp, data, run: _edited_checkpoint(
        tmp, run, "incompatible.ckpt", _other_latent_dim
    ),
}

TRAIN = [
    # Composition: an unknown option or key, a wrong type, a config that does not exist.
    Case("train", ["model=transformer"], "unknown option model=transformer; the options of 'model' are: conv, conv_hvae, gated_mlp, hvae, mlp"),
    Case("train", ["likelihood=poisson"], "unknown option likelihood=poisson; the options of 'likelihood' are"),
    Case("train", ["debug=nope"], "unknown option debug=nope; the options of 'debug' are: fdr, limit, overfit"),
    Case("train", ["trainer.max_epoch=1"], "unknown key trainer.max_epoch; did you mean trainer.max_epochs?"),
    Case("train", ["optimizer.lrr=1"], "unknown key optimizer.lrr; did you mean optimizer.lr?"),
    Case("train", ["data.batchsize=3"], "unknown key data.batchsize; did you mean data.batch_size?"),
    Case("train", ["data.zzz=1"], "unknown key data.zzz; `python -m vae_lab.train --cfg job` lists"),
    Case("train", ["kl_schedule.free_bits=0.2"], "kl_schedule.free_bits is now objective.free_bits; set"),
    Case("train", ["no_such_key=1"], "unknown key no_such_key;"),
    Case("train", ["latent_dim=abc"], "bad value for latent_dim: Value 'abc' of type 'str' could not be"),
    Case("train", ["data.batch_size=1.5"], "bad value for data.batch_size: Value '1.5' of type 'float'"),
    Case("train", ["data.download=maybe"], "bad value for data.download: Value 'maybe' is not a valid bool"),
    Case("train", ["latent_dim=null"], "bad value for latent_dim: field 'latent_dim' is not Optional"),
    Case("train", ["latent_dim=["], "cannot parse the override 'latent_dim=['"),
    Case("train", ["--config-name", "nope"], "no config named 'nope'"),
    # Hydra writes the sweep's multirun.yaml before it composes the first job.
    Case("train", ["-m", "model=transformer,mlp"], "unknown option model=transformer", leaves="outputs/multirun/*/*/multirun.yaml"),
    Case("train", ["hydra.run.dir={tmp}/a_file/run"], ("output directory ({tmp}/a_file/run): Not a directory", "hydra.run.dir=DIR")),
    Case("train", ["-m", *SLURM, "trainer=ddp"], "error: hydra/launcher=slurm asks SLURM for one task (and one GPU) per device, so trainer.devices must be a number, got 'auto'; for example trainer.devices=4"),
    # Values the types allow but a run cannot use: refused before any data is read.
    Case("train", [TINY, "latent_dim=0"], "latent_dim must be a positive integer, got 0"),
    Case("train", [TINY, "latent_dim=-4"], "latent_dim must be a positive integer, got -4"),
    Case("train", [TINY, "beta=-1"], "beta must be >= 0"),
    Case("train", [TINY, "beta=nan"], "beta must be >= 0 and finite"),
    Case("train", [TINY, "beta=inf"], "beta must be >= 0 and finite"),
    Case("train", [TINY, "optimizer.lr=-0.001"], "optimizer.lr must be a positive number"),
    Case("train", [TINY, "optimizer=sgd", "optimizer.lr=0"], "optimizer.lr must be a positive number"),
    Case("train", [TINY, "optimizer.lr=inf"], "optimizer.lr must be a positive number, got inf"),
    Case("train", [TINY, "optimizer.lr=nan"], "optimizer.lr must be a positive number, got nan"),
    Case("train", [TINY, "optimizer.weight_decay=-1"], "optimizer or scheduler config rejected"),
    Case("train", [TINY, "seed=-1"], "seed must be between 0 and 4294967295, got -1"),
    Case("train", [TINY, "seed=4294967296"], "seed must be between 0 and 4294967295"),
    Case("train", [TINY, "data.batch_size=0"], "data.batch_size must be a positive number"),
    Case("train", [TINY, "data.batch_size=-8"], "data.batch_size must be a positive number"),
    Case("train", [TINY, "data.eval_batch_size=0"], "data.eval_batch_size must be a positive number"),
    Case("train", [TINY, "data.val_size=0"], "data.val_size must be at least 1"),
    Case("train", [TINY, "data.val_size=300"], "data.val_size=300 must be between 1 and 299"),
    Case("train", [TINY, "data.binarize=static"], "data.binarize must be one of"),
    Case("train", [TINY, "trainer.max_epochs=0"], "trainer.max_epochs must be a positive integer"),
    Case("train", [TINY, "trainer.max_epochs=-2"], "trainer.max_epochs must be a positive integer"),
    Case("train", [TINY, "trainer.deterministic=maybe"], "trainer.deterministic must be true, false or warn"),
    Case("train", [TINY, "trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val must be a number >= 0"),
    Case("train", [TINY, "trainer.precision=bogus"], "could not build the run from its config"),
    Case("train", [TINY, "+trainer.no_such_arg=1"], "could not build the run from its config"),
    Case("train", [TINY, "runtime.num_threads=0"], "runtime.num_threads must be a positive integer"),
    Case("train", [TINY, "runtime.float32_matmul_precision=low"], "runtime.float32_matmul_precision must be"),
    Case("train", [TINY, "runtime.wait_policy=sleepy"], "runtime.wait_policy must be passive, active or null"),
    Case("train", [TINY, "+lr=0.1"], "unknown key lr: nothing reads it"),
    Case("train", [TINY, "+model.hidden=8"], "unknown key model.hidden: nothing reads it"),
    Case("train", [TINY, "+runtime.threads=2"], "unknown key runtime.threads: nothing reads it"),
    Case("train", [TINY, "latent_dim=${nope}"], "latent_dim cannot be resolved: Interpolation key 'nope' not found"),
    Case("train", [TINY, "likelihood=gaussian", "likelihood.sigma=0"], "likelihood.sigma must be positive"),
    # The machine, the data and the output directory.
    pytest.param(
        Case("train", [TINY, "trainer=gpu"], "use trainer=cpu"),
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        id="train trainer=gpu",
    ),
    Case("train", [TINY, "data.root={tmp}/nowhere"], ("looked in: {tmp}/nowhere", "make data")),
    Case("train", [TINY, "data.root={tmp}/data"], "is truncated", "data:truncate"),
    Case("train", [TINY, "data.root={tmp}/data"], "corrupt or truncated", "data:corrupt_gzip"),
    Case("train", [TINY, "data.root={tmp}/data"], "magic number", "data:bad_magic"),
    Case("train", [TINY, "paths.output_dir={tmp}/a_file/run"], ("cannot write to the output directory", "a_file/run")),
    # A checkpoint to resume from that does not belong to this command: what is trained
    # (the trained run has latent_dim=4 and the default model) must be repeated.
    Case("train", [TINY, "ckpt_path={run}", "latent_dim=8"], ("latent_dim: checkpoint 4, command 8", "repeat the")),
    Case("train", [TINY, "ckpt_path={run}", "latent_dim=4", "optimizer.lr=0.01"], "optimizer.lr: checkpoint 0.001, command 0.01"),
    *(
        Case("train", [TINY, "ckpt_path={run}", "latent_dim=4", change], (f"{group}._target_: checkpoint", "was trained with other settings than this command gives"))
        for change, group in [
            ("prior=mog", "prior"),
            ("objective=iwae", "objective"),
            ("kl_schedule=linear", "kl_schedule"),
            ("conditioning=label", "conditioning"),
        ]
    ),
    Case("train", [TINY, "ckpt_path={tmp}/other.ckpt", "latent_dim=4"], "does not fit the model of this config", "other.ckpt"),
    Case("train", [TINY, "ckpt_path={tmp}/weights.ckpt", "latent_dim=4"], r"no training state (optimizer_states, loops missing)", "weights.ckpt"),
]  # fmt: skip

# The trained run's test set has 100 images and its latent space 4 dims.
EVALUATE = [
    Case("evaluate", ["eval.batch_size=0"], "eval.batch_size must be a positive integer, got 0; for example"),
    Case("evaluate", ["eval.limit=abc"], "bad value for eval.limit: Value 'abc' of type 'str' could not be"),
    Case("evaluate", ["eval.fid=maybe"], "bad value for eval.fid: Value 'maybe' is not a valid bool"),
    Case("evaluate", ["eval.fid_samples=abc"], "bad value for eval.fid_samples: Value 'abc' of type 'str'"),
    Case("evaluate", ["eval.limit=0"], "eval.limit must be a positive integer, got 0"),
    Case("evaluate", ["eval.k=0"], "eval.k must be a positive integer, got 0; for example eval.k=5000"),
    Case("evaluate", ["eval.k=-3"], "eval.k must be a positive integer, got -3"),
    Case("evaluate", ["eval.k=2.5"], "bad value for eval.k: Value '2.5' of type 'float' could not be"),
    Case("evaluate", ["eval.k=true"], "bad value for eval.k: Value 'True' of type 'bool' could not be"),
    Case("evaluate", ["eval.kk=3"], "unknown key eval.kk; did you mean eval.k?"),
    Case("evaluate", ["eval.decode_batch=0"], "eval.decode_batch must be a positive integer or null"),
    Case("evaluate", ["eval.split=training"], "eval.split must be one of train, val, test, got 'training'"),
    Case("evaluate", ["seed=-1"], "seed must be between 0 and 4294967295, got -1"),
    Case("evaluate", ["device=tpu"], "device=tpu is not a torch device"),
    Case("evaluate", ["runtime.num_threads=1"], "unknown key runtime; `python -m vae_lab.evaluate --cfg job` lists"),
    Case("evaluate", ["ckpt_path={tmp}/incompatible.ckpt"], "does not fit the model", "incompatible.ckpt"),
    Case("evaluate", [*FID, "eval.classifier={tmp}/empty"], "error: no Fashion-MNIST classifier in {tmp}/empty (FID and KID are measured in its features); make one with `make classifier` (python -m vae_lab.classifier: a few minutes on a CPU), or pass eval.classifier=PATH"),
    Case("evaluate", [*FID, "eval.classifier={classifier}", "eval.fid_samples=1"], "eval.fid_samples must be an integer >= 2"),
    Case("evaluate", [*FID, "eval.classifier={classifier}", "eval.kid_subset_size=0"], "eval.kid_subset_size must be an integer >= 2"),
    Case("evaluate", [*FID, "eval.classifier={classifier}", "eval.kid_subset_size=500"], "is more than eval.fid_samples=100"),
    Case("evaluate", [*FID, "eval.classifier={classifier}", "eval.fid_samples=5000", "eval.kid_subset_size=50"], "more than the 250 training"),
    Case("evaluate", [*FID, "eval.classifier={classifier}", "eval.kid_subset_size=150", "eval.fid_samples=200"], "more than the 100 test images"),
]  # fmt: skip

SAMPLE = [
    Case("sample", ["sample.n=0"], "sample.n must be a positive integer, got 0; for example sample.n=64"),
    Case("sample", ["sample.nrow=-1"], "sample.nrow must be a positive integer, got -1"),
    Case("sample", ["sample.steps=0"], "sample.steps must be a positive integer, got 0"),
    Case("sample", ["sample.n=abc"], "bad value for sample.n: Value 'abc' of type 'str' could not be"),
    Case("sample", ["sample.pixels=maybe"], "bad value for sample.pixels: Value 'maybe' is not a valid bool"),
    Case("sample", ["sample.span=0"], "sample.span must be a positive number, got 0.0"),
    Case("sample", ["sample.interpolation=[0]"], "sample.interpolation must be two test image indices, got [0]"),
    Case("sample", ["sample.interpolation=[0,-1]"], "sample.interpolation's indices must be an integer >= 0"),
    Case("sample", ["sample.interpolation=[0,100]"], "the test set has 100 images: sample.interpolation [0, 100]"),
    Case("sample", ["sample.traversal_image=100"], "the test set has 100 images"),
    Case("sample", ["sample.n_reconstructions=101"], "sample.n_reconstructions (101) at most 100"),
    Case("sample", ["sample.traversal_dims=[]"], "sample.traversal_dims is empty"),
    Case("sample", ["sample.traversal_dims=[4]"], "sample.traversal_dims must be dims in [0, 4), got [4]"),
    Case("sample", ["sample.traversal_dims=[-1]"], "sample.traversal_dims' dims must be an integer >= 0, got -1"),
    Case("sample", ["sample.label=3"], "this model is not class-conditional"),
    Case("sample", ["sample.out=x.jpg"], "sample.out must name a .png file, got 'x.jpg'"),
    Case("sample", ["sample.out={tmp}/a_file/s.png"], "cannot write sample.out={tmp}/a_file/s.png: {tmp}/a_file"),
    Case("sample", ["sample.out={tmp}/d.png"], "sample.out={tmp}/d.png is a directory"),
    Case("sample", ["sample.out=/proc/vae_lab/s.png"], "cannot write sample.out=/proc/vae_lab/s.png"),
    Case("sample", ["zzz=1"], "unknown key zzz; `python -m vae_lab.sample --cfg job` lists every key"),
    Case("sample", ["ckpt_path={tmp}/incompatible.ckpt"], "does not fit the model", "incompatible.ckpt"),
]  # fmt: skip

OTHERS = [
    Case("classifier", ["epochs=0"], "epochs must be a positive integer, got 0; for example epochs=5"),
    Case("classifier", ["lr=-1"], "lr must be a positive number"),
    Case("classifier", ["data.binarize=dynamic"], "the classifier is trained on the 8-bit images"),
    Case("classifier", ["runtime.wait_policy=sleepy"], "runtime.wait_policy must be passive, active or null"),
    Case("report", ["{tmp}/nowhere"], "{tmp}/nowhere is not a directory"),
    Case("report", ["{tmp}/empty"], "no runs under {tmp}/empty"),
    Case("report", ["{run}", "--out", "{tmp}/report", "--sort", "test/nope"], "--sort test/nope is not a metric of these runs"),
    # A directory no command can make (/proc takes none, for root neither).
    *(
        Case(command, ["hydra.run.dir=/proc/vae_lab_test/run"], ("error: cannot create the command's output directory (/proc/vae_lab", "hydra.run.dir=DIR"))
        for command in ("evaluate", "sample", "train")
    ),
]  # fmt: skip


def _id(case: Case) -> str:
    setup = [f"({case.setup})"] if case.setup else []
    return " ".join([case.command, *setup, *(a for a in case.args if a != TINY)])


def _params(cases: list) -> list:
    return [pytest.param(c, id=_id(c)) if isinstance(c, Case) else c for c in cases]


def _fill(text: str, values: dict[str, Path]) -> str:
    for name, value in values.items():
        text = text.replace(f"{{{name}}}", str(value))
    return text


@pytest.fixture
def values(
    request: pytest.FixtureRequest, tiny_data: Path, trained_run: Path, tmp_path: Path
) -> dict[str, Path]:
    """What the placeholders stand for; the classifier is trained only for a case that
    names it, here at set-up rather than inside the case's captured output."""
    named = {"tmp": tmp_path, "data": tiny_data, "run": trained_run}
    if any("{classifier}" in arg for arg in request.node.callspec.params["case"].args):
        named["classifier"] = request.getfixturevalue("tiny_classifier")
    return named


@pytest.mark.parametrize("case", _params([*TRAIN, *EVALUATE, *SAMPLE, *OTHERS]))
def test_a_bad_input_is_one_line_and_leaves_nothing(
    case: Case,
    values: dict[str, Path],
    tiny_data: Path,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a_file").write_text("")
    (tmp_path / "d.png").mkdir()
    (tmp_path / "empty").mkdir()
    if case.setup is not None:
        SETUPS[case.setup](tmp_path, tiny_data, trained_run)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}

    args = []
    for arg in [*DEFAULTS.get(case.command, []), *case.args]:
        args += tiny_overrides(tiny_data, tmp_path / "run") if arg == TINY else [arg]
    args = [_fill(arg, values) for arg in args]
    line = one_line_error(case.command, args, tmp_path, monkeypatch, capsys)

    says = (case.says,) if isinstance(case.says, str) else case.says
    for part in says:
        assert _fill(part, values) in line
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    known = set(tmp_path.glob(case.leaves)) if case.leaves else set()
    assert after - known == before  # no results, no logs


# --- errors met once the run has started ---------------------------------------------------


def test_unwritable_place_inside_the_run(compose_cfg: ComposeFn, tmp_path: Path) -> None:
    # The checkpoint directory's name taken by a file: the run cannot write its checkpoints.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("")
    with pytest.raises(UserError, match=r"cannot write .*checkpoints: File exists"):
        train(compose_cfg())
    assert not (tmp_path / "run" / "metrics.json").exists()


def _resume(compose_cfg: ComposeFn, ckpt: Path | str, *overrides: str) -> None:
    train(compose_cfg(f"ckpt_path={ckpt}", "latent_dim=4", "trainer.max_epochs=2", *overrides))


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

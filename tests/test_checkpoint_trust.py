"""Any file given as a checkpoint, to every command that takes one, through the real entry
points: a checkpoint whose config names code is refused before anything of it is built,
and whatever else the path holds gets one `error:` line saying what it is not, exit 2."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import COMMANDS, one_line_error
from vae_lab.cli.errors import UserError
from vae_lab.models.build import build_vae
from vae_lab.run import allowed_targets

# --- a checkpoint's config never runs code --------------------------------------------------


def _payloads(marker: Path, source: Path) -> dict[str, tuple[str, Any]]:
    """Where in the saved config a callable goes (a dotted path, `[i]` for a list element)
    and the node: each creates `marker` when Hydra instantiates it."""
    touch = {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}
    copy = {"_target_": "shutil.copyfile", "src": str(source), "dst": str(marker)}
    return {
        "top-level group": ("likelihood", touch),
        "nested dict": ("data.root", copy),  # what evaluate's data module used to run
        "list element": ("model.encoder.hidden_sizes[1]", copy),
        # passes a check of the name's prefix: a function reached through a module of ours
        "through vae_lab": ("prior", {**copy, "_target_": "vae_lab.cli.entry.shutil.copyfile"}),
        # a resolver that builds the node when the config is read: no `_target_` to walk
        "interpolation": (
            "model.decoder.hidden_sizes",
            f"${{oc.create:'{{_target_: pathlib.Path.touch, _args_: [\"{marker}\"]}}'}}",
        ),
    }


def _place(config: dict[str, Any], where: str, node: Any) -> str:
    """Put `node` at `where` in `config`; return the top-level group it went into."""
    *parents, last = where.replace("[", ".[").split(".")
    holder: Any = config
    for key in parents:
        holder = holder[int(key[1:-1])] if key.startswith("[") else holder[key]
    if last.startswith("["):
        holder[int(last[1:-1])] = node
    else:
        holder[last] = node
    return where.split(".")[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "place", ["top-level group", "nested dict", "list element", "through vae_lab", "interpolation"]
)
def test_a_checkpoint_whose_config_names_code_is_refused_and_the_code_never_runs(
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    place: str,
) -> None:
    marker, source = tmp_path / "payload-ran", trained_run / "config.yaml"
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    where, node = _payloads(marker, source)[place]
    group = _place(ckpt["hyper_parameters"]["config"], where, node)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)  # plain data: a weights-only load reads it

    line = one_line_error(command, [f"ckpt_path={evil}"], tmp_path, monkeypatch, capsys)
    assert "error: refused to use the checkpoint: its config holds" in line
    assert f"at config.{where};" in line
    assert not marker.exists()
    # The payload is live: the unchecked build of before (the model by `build_vae`, the
    # data module by `instantiate`) runs it.
    config = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    with contextlib.suppress(Exception):  # a constructor may fail after the callable ran
        instantiate(config.data) if group == "data" else build_vae(config, [1, 28, 28])
    assert marker.exists()


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_carrying_pickled_code_is_refused_and_the_code_never_runs(
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    marker = tmp_path / "payload-ran"
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["note"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)

    line = one_line_error(command, [f"ckpt_path={evil}"], tmp_path, monkeypatch, capsys)
    assert f"refused to load {evil}: it holds pickled Python objects" in line
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is live: unsafe loading runs it
    assert marker.exists()


# --- any file given as a checkpoint -----------------------------------------------------------


def _bad_files(run: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """(path, what the error line says) for each kind of file that is not our checkpoint."""
    good = (run / "checkpoints" / "last.ckpt").read_bytes()
    text, noise, empty, cut, bare, other, fifo = (
        tmp_path / name
        for name in ("passwd", "noise.ckpt", "empty.ckpt", "cut.ckpt", "sd.pt", "o.ckpt", "fifo")
    )
    text.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    noise.write_bytes(random.Random(0).randbytes(5000))
    empty.write_bytes(b"")
    cut.write_bytes(good[: len(good) // 2])
    torch.save(torch.nn.Linear(3, 2).state_dict(), bare)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3, "global_step": 9}, other)
    os.mkfifo(fifo)  # reading it would block forever
    (tmp_path / "emptydir").mkdir()
    return {
        "text": (text, "is not a readable checkpoint: it is a text file"),
        "random bytes": (noise, "its bytes are in neither of PyTorch's formats"),
        "empty": (empty, "is not a readable checkpoint: the file is empty"),
        "truncated": (cut, "it is a PyTorch zip archive cut short or damaged"),
        "bare state_dict": (bare, "holds a bare state_dict (2 tensors"),
        "another program's": (other, "holds a Lightning checkpoint of another program"),
        "directory": (tmp_path / "emptydir", "is a directory without checkpoints/last.ckpt"),
        "pipe": (fifo, "is not a regular file"),
        "missing": (tmp_path / "nowhere.ckpt", "does not exist"),
    }


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "kind",
    [
        "text",
        "random bytes",
        "empty",
        "truncated",
        "bare state_dict",
        "another program's",
        "directory",
        "pipe",
        "missing",
    ],
)
def test_any_file_given_as_a_checkpoint_is_one_line_saying_what_it_is_not(
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    kind: str,
) -> None:
    path, message = _bad_files(trained_run, tmp_path)[kind]
    line = one_line_error(command, [f"ckpt_path={path}"], tmp_path, monkeypatch, capsys)
    assert str(path) in line and message in line
    assert not list(tmp_path.glob("outputs/*/*/*"))  # the command's directory was removed


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("torch.optim.lr_scheduler.ExponentialLR", True),  # not in configs/, still a scheduler
        ("lightning.pytorch.callbacks.LearningRateMonitor", True),
        ("vae_lab.callbacks.timing.EpochTimer", True),
        ("vae_lab.run.checkpoint_io.AtomicCheckpointIO", True),
        ("vae_lab.checkpoint_io.AtomicCheckpointIO", False),  # its name before the move
        ("torch.optim.adam.torch.load", False),  # a function, through a module
        ("vae_lab.train.Path", False),  # pathlib's class, imported by a module of ours
        ("vae_lab.train.os.system", False),
        ("lightning.pytorch.cli.LightningCLI", False),  # a Lightning class of no allowed kind
        ("vae_lab.report.__main__.main", False),  # importing it would run the report
        ("torch.nn.Linear", False),  # outside the three packages
        ("vae_lab.models.components.mlp.MLPEncoder.forward", False),  # a method
        ("vae_lab.no_such_module.X", False),
    ],
)
def test_the_allow_list_by_hand(target: str, allowed: bool) -> None:
    config = {"model": {"encoder": {"_target_": target}}}
    if allowed:
        allowed_targets.check(config)
    else:
        with pytest.raises(UserError, match=f"_target_ '{target}' at model.encoder;"):
            allowed_targets.check(config)

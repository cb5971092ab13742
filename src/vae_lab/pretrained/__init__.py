"""The trained models that ship with vae_lab: the best checkpoint of each finished published
row, as weights and config, with the figure it was measured at.

    vae_lab.load("published_nll")                               # the model, from Python
    python -m vae_lab.evaluate ckpt_path=published_nll eval.k=5000
    python -m vae_lab.pretrained                                # what ships

Each shipped model is a folder `<name>/` here (package data of the wheel) holding
`model.ckpt`, a Lightning checkpoint without its optimizer state (weights, config, epoch,
step), and `card.json`: what it is, the published row it reproduces, its figures on the
full protocol, the command that retrains it, and a `check` figure (the first 500 test
images at a small k and a fixed seed) that tests/test_pretrained.py measures again.
`python -m vae_lab.pretrained ship ...` makes one (`ship`). A name is given wherever a
checkpoint path is (`vae_lab.run.checkpoints.resolve`): a path that exists wins.

This module imports neither torch nor Lightning: the checkpoint reader imports it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

from vae_lab.cli.errors import UserError

ROOT = Path(__file__).resolve().parent  # where the shipped folders are; tests point it elsewhere
CHECKPOINT = "model.ckpt"
CARD = "card.json"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # a folder name, never a path
LIST_HINT = "`python -m vae_lab.pretrained` lists the shipped models"


def names() -> list[str]:
    """The shipped models' names, sorted: the folders here holding both files."""
    if not ROOT.is_dir():
        return []
    return sorted(
        p.name
        for p in ROOT.iterdir()
        if NAME.fullmatch(p.name) and (p / CHECKPOINT).is_file() and (p / CARD).is_file()
    )


def _folder(name: str) -> Path:
    if name not in names():
        shipped = ", ".join(names()) or "none yet"
        raise UserError(f"no shipped model is named {name!r} (shipped: {shipped}); {LIST_HINT}")
    return ROOT / name


def checkpoint(name: str) -> Path:
    """The `model.ckpt` of the shipped model `name`."""
    return _folder(name) / CHECKPOINT


def card(name: str) -> dict[str, Any]:
    """The `card.json` of the shipped model `name`: what it is and its figures."""
    return cast(dict[str, Any], json.loads((_folder(name) / CARD).read_text()))


def shipped_name(path: Path) -> str | None:
    """The name of the shipped model whose `model.ckpt` `path` is, else None."""
    p = path.resolve()
    if p.name == CHECKPOINT and p.parent.parent == ROOT.resolve() and p.parent.name in names():
        return p.parent.name
    return None

"""Where the classifier's weights live, and how they are written, found and read.

`fashion_cnn-<hash>.pt` holds the state dict alone (tensors: `torch.load(weights_only=True)`
reads it); `<hash>` is the start of the file's SHA-256, as in torchvision's weight files,
so a changed or truncated file is caught before use. `fashion_cnn-<hash>.json` beside it
holds what rebuilds the network (`arch`), the training config and the measured accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vae_lab.classifier import DEFAULT_DIR
from vae_lab.classifier.net import FashionCNN
from vae_lab.cli.errors import UserError, brief

STEM = "fashion_cnn"
HASH_CHARS = 12
HOW_TO_MAKE = (
    "make one with `make classifier` (python -m vae_lab.classifier: a few minutes on a CPU), "
    "or pass eval.classifier=PATH"
)


class Stored(NamedTuple):
    weights: Path
    info: dict[str, Any]  # the .json: arch, config, accuracy


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(net: FashionCNN, arch: dict[str, Any], info: dict[str, Any], directory: Path) -> Path:
    """Write the weights under their content hash and the .json beside them; return the .pt."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{STEM}.pt.tmp"
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    digest = sha256(tmp)
    weights = directory / f"{STEM}-{digest[:HASH_CHARS]}.pt"
    meta = {"arch": arch, "sha256": digest, **info}
    meta_tmp = directory / f".{STEM}.json.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, weights)  # the weights first: a .json never names a missing file
    os.replace(meta_tmp, weights.with_suffix(".json"))
    return weights


def find(path: str | Path | None) -> Path:
    """The weights file `path` names: a .pt file, or a directory (default `DEFAULT_DIR`)
    for its newest classifier; a UserError that says how to make one when there is none."""
    where = Path(path).expanduser() if path else DEFAULT_DIR
    if where.is_file():
        return where
    found = sorted(
        (p for p in where.glob(f"{STEM}-*.pt") if p.with_suffix(".json").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise UserError(
            f"no Fashion-MNIST classifier in {where} (FID and KID are measured in its "
            f"features); {HOW_TO_MAKE}"
        )
    return found[-1]


def read(path: str | Path | None) -> Stored:
    """Find the weights, check their hash against the name, and read the .json beside them."""
    weights = find(path)
    meta_file = weights.with_suffix(".json")
    if not meta_file.is_file():
        raise UserError(f"{weights} has no {meta_file.name} beside it (its config); {HOW_TO_MAKE}")
    digest = sha256(weights)
    if not weights.stem.endswith(f"-{digest[:HASH_CHARS]}"):
        raise UserError(
            f"{weights} does not match the hash in its name (changed or truncated); {HOW_TO_MAKE}"
        )
    try:
        info = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {meta_file}: {brief(e)}; {HOW_TO_MAKE}") from e
    return Stored(weights, info)


def load(path: str | Path | None = None, device: torch.device | str = "cpu") -> FashionCNN:
    """The classifier, weights-only, in eval mode on `device`."""
    stored = read(path)
    try:
        state = torch.load(stored.weights, map_location="cpu", weights_only=True)
        net = FashionCNN(**stored.info["arch"])
        net.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot load the classifier {stored.weights}: {brief(e)}") from e
    return net.to(device).eval()

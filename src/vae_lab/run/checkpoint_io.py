"""Checkpoint files are written whole or not at all: to a temporary file beside the target,
flushed to disk, then renamed over it.

Lightning's own writer (`_atomic_save`) goes through an fsspec transaction whose temporary
file lives in the system temp directory; where that is another file system than the run
directory, the final move is a copy into the target, so a process killed during it leaves
a half-written `last.ckpt`, and nothing is fsynced. A rename within one directory is
atomic on POSIX: a reader, or a run resumed after a crash, sees the old checkpoint or the
new one, never a mixture.

A write that fails (a full disk, a directory turned read-only) leaves the old file as it
was, removes its temporary file, and raises an `OSError` that names the checkpoint; a
write killed midway leaves a temporary file, which the next run in the directory removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vae_lab.cli.errors import os_error_in

_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # the names `_create_beside` gives


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` for local paths, writing through a temporary file and a rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        target = Path(path)
        try:
            _write(checkpoint, target)
        except BaseException as e:
            # A full disk or a read-only directory reaches us as torch's RuntimeError
            # ("[enforce fail at inline_container.cc:...]"), or as an OSError naming the
            # temporary file or nothing: raised again as the OSError it is, naming the
            # checkpoint.
            fault = os_error_in(e)
            if fault is None:
                raise
            named = fault.filename and not is_leftover(Path(os.fsdecode(fault.filename)))
            where = fault.filename if named else str(target)  # the checkpoints directory, say
            raise OSError(fault.errno, fault.strerror, where) from None


def _write(checkpoint: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        # On a file system turned read-only the unlink fails too; the next run started in
        # this directory removes what is left (`remove_leftovers`).
        with contextlib.suppress(OSError):
            Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)  # make the rename itself survive a power cut


def is_leftover(path: Path) -> bool:
    """Whether `path` is a temporary file of this writer (`.<name>.<12 hex digits>.tmp`)."""
    return _TEMPORARY.fullmatch(path.name) is not None


def remove_leftovers(directory: Path) -> list[Path]:
    """Remove the temporary files that writes killed midway left in `directory`; return
    them. Only for a directory no other process writes to (a run's, under its lock)."""
    removed = [p for p in directory.glob(".*.tmp") if is_leftover(p) and p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def _create_beside(target: Path) -> tuple[int, str]:
    """A new file `.<name>.<random>.tmp` beside `target`, opened for writing.

    Created with mode 0666 so the kernel applies the process's umask, as for any file the
    user writes (`tempfile.mkstemp` would make it 0600: a checkpoint is not secret). The
    umask is never read or changed: that would touch process-wide state.
    """
    while True:
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:  # 2^-48 per try: another writer drew the same name
            continue


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Checkpoint files are written whole or not at all: to a temporary file beside the target,
flushed to disk, then renamed over it.

Lightning's own writer (`_atomic_save`) goes through an fsspec transaction whose temporary
file lives in the system temp directory; where that is another file system than the run
directory, the final move is a copy into the target, so a process killed during it leaves
a half-written `last.ckpt`, and nothing is fsynced. A rename within one directory is
atomic on POSIX: a reader, or a run resumed after a crash, sees the old checkpoint or the
new one, never a mixture.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` for local paths, writing through a temporary file and a rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = _create_beside(target)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)  # make the rename itself survive a power cut


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

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
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

_UMASK = os.umask(0o022)  # read the process's umask (this is the only way) and restore it
os.umask(_UMASK)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` for local paths, writing through a temporary file and a rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it 0600; a checkpoint is not secret
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)  # make the rename itself survive a power cut


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

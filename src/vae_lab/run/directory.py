"""A run's output directory: made, checked writable, and held by one process at a time.

Fresh runs get distinct directories by name (a random token per command). A resumed run
goes back into the directory of the run it continues, so that directory is locked for as
long as a process trains in it: a second process (the same run resumed twice, or resumed
while it is still running) is refused rather than interleaving its checkpoints and events
with the first one's. The lock is an advisory `flock`, which the kernel drops when its
process ends however it ends, SIGKILL included: a crashed run never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vae_lab.cli.errors import UserError

LOCK_NAME = ".lock"


def prepare(run_dir: Path) -> None:
    """Create `run_dir` and prove it takes a file, or raise a UserError naming the fix."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"cannot write to the output directory {run_dir}: {e.strerror or e}; pass a "
            "writable one with paths.output_dir=DIR (or hydra.run.dir=DIR)"
        ) from e


@contextmanager
def held(run_dir: Path) -> Iterator[None]:
    """Hold the lock on `run_dir` for the duration of the block, or raise a UserError."""
    lock = run_dir / LOCK_NAME
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise UserError(
                f"{run_dir} is in use by {owner}, which is still training in it; wait for "
                "it to finish or stop it before resuming this run"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            # Removed while still locked: a process that opens the name afterwards makes a
            # new file and its own lock, one that opened it before finds it locked. In a
            # directory turned read-only it stays, unlocked, and is harmless: the error
            # that stopped the run is the one to report.
            with suppress(OSError):
                lock.unlink(missing_ok=True)

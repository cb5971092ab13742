"""A run stopped by the file system under it: a full disk, a directory turned read-only, a
permission taken away.

Such a fault reaches the run as many things: torch's checkpoint writer raises a RuntimeError
("[enforce fail at inline_container.cc:...]") over the OSError its write met, Lightning's
TensorBoard logger a ValueError over its writer thread's, `logging` prints a traceback for
every line of the log file it cannot write and carries on. `stopped_by` finds the OSError
behind whatever was raised and says in one line what happened, where, what was kept and the
command that resumes the run once the cause is gone. `watched` keeps the log file's faults
and TensorBoard's writer thread quiet while a run trains: a fault of the log is kept and
raised by `raise_if_met` at the run's next step (`DiskFaultGuard`), the thread's is raised
by the next event logged.

Every file a run writes is written whole or not at all (checkpoints: `checkpoint_io`;
metrics.json, config.yaml, image grids: `outputs.replaced_whole`), so a fault leaves the
last good checkpoint loadable and no half-written file that looks like a result.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vae_lab.cli.errors import (
    UserError,
    chain,
    from_os_error,
    is_environment_error,
    os_error_in,
)

# What happened, and what to do about it, by errno.
_MEANING = {
    errno.ENOSPC: ("the disk is full", "free some space on that disk"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or raise the quota"),
    errno.EROFS: ("the file system is read-only", "make that file system writable again"),
    errno.EACCES: ("permission denied", "make the directory writable for this user"),
    errno.EPERM: ("permission denied", "make the directory writable for this user"),
}

_met: list[OSError] = []  # faults of the log file, kept for `raise_if_met`


def stopped_by(error: BaseException, run_dir: Path) -> UserError | None:
    """The one line for a run in `run_dir` that a fault of the file system stopped, or None
    if no such fault lies behind `error`."""
    fault = os_error_in(error)
    if fault is None:
        return None
    if fault.errno not in _MEANING:  # a file where a directory should be: not to wait out
        return from_os_error(fault)
    # Where the first fault happened; an OSError of a write often names no file (that of a
    # log or event file's write), and then the error raised over it may.
    met = [e for e in chain(error) if isinstance(e, OSError) and is_environment_error(e)]
    where = os.fsdecode(next((e.filename for e in reversed(met) if e.filename), run_dir))
    what, fix = _MEANING[fault.errno]
    from vae_lab.run.checkpoints import LAST  # torch and the model: only once a run stopped

    last = run_dir / LAST  # what `ckpt_path=<run dir>` resumes from
    if os.path.isfile(last):
        kept = f"its last good checkpoint is kept: {last}"
        then = f"then resume with: {resume_command(run_dir)}"
    else:
        kept = "no checkpoint had been written yet"
        then = "then run the command again"
    return UserError(
        f"{what}: cannot write {where} ({fault.strerror}); the run stopped and {kept}. "
        f"To go on, {fix}, {then}"
    )


def resume_command(run_dir: Path) -> str:
    """`python -m vae_lab.train <this command's options> ckpt_path=<run_dir>`: a resume must
    repeat the options of what it trains (`vae_lab.run.resume`)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # train() called from Python
        return f"python -m vae_lab.train <the run's options> ckpt_path={run_dir}"
    task = HydraConfig.get().overrides.task
    options = [o for o in task if o.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    return shlex.join(["python", "-m", "vae_lab.train", *options, f"ckpt_path={run_dir}"])


def raise_if_met() -> None:
    """Raise the first fault the log file met since `watched` began, if any."""
    if _met:
        raise _met[0]


@contextmanager
def watched() -> Iterator[None]:
    """For the block: a log file (the root logger's `FileHandler`s, Hydra's `train.log`)
    that cannot be written is kept in `_met` and silenced instead of printing a traceback
    per line, and TensorBoard's writer thread dies without printing one."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in handlers:
        vars(handler)["handleError"] = _log_failed(handler, handler.handleError)
    previous_hook = threading.excepthook
    threading.excepthook = _thread_failed(previous_hook)
    try:
        yield
    finally:
        threading.excepthook = previous_hook
        for handler in handlers:
            vars(handler).pop("handleError", None)
        _met.clear()


def _log_failed(
    handler: logging.FileHandler, default: Callable[[logging.LogRecord], None]
) -> Callable[[logging.LogRecord], None]:
    def handle_error(record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        fault = None if error is None else os_error_in(error)
        if fault is None:
            default(record)
            return
        _met.append(OSError(fault.errno, fault.strerror, handler.baseFilename))
        handler.setLevel(logging.CRITICAL + 1)  # nothing more to this file

    return handle_error


def _thread_failed(default: Callable[[Any], object]) -> Callable[[Any], object]:
    def hook(args: Any) -> object:
        writer = type(args.thread).__module__.startswith("tensorboard.")
        if writer and args.exc_value is not None and os_error_in(args.exc_value) is not None:
            return None  # TensorBoard raises it again at the next event logged
        return default(args)

    return hook

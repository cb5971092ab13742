"""The exception types for what goes wrong through no bug of ours, and how they are reported.

Every such failure is one `error: ...` line on stderr and a non-zero exit status, never a
traceback: 2 for a mistake in the input (config, data, checkpoint, hardware, a directory
that cannot be written), 3 for a training run that diverged.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from typing import NoReturn

USER_ERROR_EXIT = 2
DIVERGED_EXIT = 3

# OSErrors that mean "this machine or path will not take our writes", not a bug of ours.
_ENVIRONMENT_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EEXIST,
}


class UserError(Exception):
    """A mistake in the user's input (config, data, hardware): shown as one line, exit status 2.

    The message names the problem and the fix; no traceback is shown, because the user's
    code did not fail, their input did.
    """

    exit_code = USER_ERROR_EXIT


class TrainingDiverged(UserError):
    """A non-finite loss or metric: the run stopped, its last good checkpoint kept (exit 3).

    Not a mistake in the command as such, but the user's to fix (learning rate, clipping),
    so it is reported the same way; its own exit status lets a script tell the two apart.
    """

    exit_code = DIVERGED_EXIT


def brief(error: BaseException, limit: int = 300) -> str:
    """An exception's message as one line of at most `limit` characters (its type if empty)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then its cause (or the exception it was raised while handling, unless it
    was raised `from None`), and so on: the chain a traceback would show."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        if link.__cause__ is not None or link.__suppress_context__:
            link = link.__cause__
        else:
            link = link.__context__


def is_environment_error(error: BaseException) -> bool:
    """Whether `error` is an OSError of a path or the machine, not of a bug of ours."""
    return isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError of a path or the machine (a full disk, a read-only file system, a denied
    permission) behind `error`, or None: `error` itself or one in its chain, the deepest,
    which happened first. Such an error often surfaces as another type: torch's zip writer
    raises a RuntimeError over the OSError its write met, Lightning's TensorBoard logger a
    ValueError over its writer's."""
    found = [e for e in chain(error) if isinstance(e, OSError) and is_environment_error(e)]
    return found[-1] if found else None


def from_os_error(error: OSError) -> UserError | None:
    """A UserError for an OSError that a path or the machine caused (permissions, a full
    disk, a file where a directory should be), or None for any other OSError."""
    if error.errno not in _ENVIRONMENT_ERRNOS:
        return None
    where = f" {error.filename}" if error.filename else ""
    fix = (
        "free some disk space"
        if error.errno in (errno.ENOSPC, errno.EDQUOT)
        else "choose a writable place with paths.output_dir=DIR (where results go) or "
        "hydra.run.dir=DIR (where the command's log goes)"
    )
    return UserError(f"cannot write{where}: {error.strerror}; {fix}")


def renamed_key(old: str, new: str) -> UserError:
    """The one line for a config key that moved (`config.schemas.RENAMED_KEYS`)."""
    return UserError(f"{old} is now {new}; set {new}=... instead (same meaning, same values)")


def report_and_exit(error: UserError) -> NoReturn:
    """Print `error` as a single `error: ...` line on stderr and exit with its status."""
    message = " ".join(str(error).split())  # one line, whatever the message held
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)

"""The one exception type for a user's mistake, and how it is reported."""

from __future__ import annotations

import sys

USER_ERROR_EXIT = 2


class UserError(Exception):
    """A mistake in the user's input (config, data, hardware): shown as one line, exit status 2.

    The message names the problem and the fix; no traceback is shown, because the user's
    code did not fail, their input did.
    """


def report_and_exit(error: UserError) -> None:
    """Print `error` as a single `error: ...` line on stderr and exit with status 2."""
    message = " ".join(str(error).split())  # one line, whatever the message held
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USER_ERROR_EXIT)

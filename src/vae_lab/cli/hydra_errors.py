"""Hydra's composition errors (an unknown option or key, a wrong type, a bad override) as
one `error: ...` line each.

Left alone, Hydra prints these as several lines (the search path, an advice about
HYDRA_FULL_ERROR) and exits with status 1. `reported()` asks Hydra to raise them instead
(HYDRA_FULL_ERROR=1, read by Hydra when an exception reaches it) and words each one as a
single line that names the key and the fix, with the exit status of every other bad input.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import (
    CompactHydraException,
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from vae_lab.cli.errors import UserError, brief, from_os_error, renamed_key, report_and_exit
from vae_lab.config.schemas import RENAMED_KEYS

_HYDRA_DIR = Path(hydra.__file__).resolve().parent
_OUR_DIR = Path(__file__).resolve().parents[1]  # the vae_lab package


def _in_hydra_startup(error: BaseException) -> bool:
    """Whether `error` was raised by Hydra's own start-up (the run directory, its `.hydra/`,
    the log file), before the command's code ran: no frame of vae_lab's lies between
    Hydra's entry and the error."""
    files = [Path(f.filename).resolve() for f in traceback.extract_tb(error.__traceback__)]
    entry = next((i for i, f in enumerate(files) if f.is_relative_to(_HYDRA_DIR)), None)
    return entry is not None and not any(f.is_relative_to(_OUR_DIR) for f in files[entry:])


def _startup_os_error(error: OSError) -> UserError:
    where = f" ({error.filename})" if error.filename else ""
    return UserError(
        f"cannot create the command's output directory{where}: "
        f"{error.strerror or brief(error)}; choose a writable place with hydra.run.dir=DIR "
        "(hydra.sweep.dir=DIR with -m)"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unknown_key(full_key: str, key: str, parent: Any, command: str) -> UserError:
    """Name the key, and the nearest key of the node it was meant for if there is one."""
    if full_key in RENAMED_KEYS:
        return renamed_key(full_key, RENAMED_KEYS[full_key])
    keys = [str(k) for k in parent] if isinstance(parent, Mapping) else []  # a DictConfig too
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        prefix = full_key[: len(full_key) - len(key)]
        return UserError(f"unknown key {full_key}; did you mean {prefix}{close[0]}?")
    return UserError(
        f"unknown key {full_key}; `python -m vae_lab.{command} --cfg job` lists every key"
    )


def _missing_config(error: MissingConfigException) -> UserError:
    name = error.missing_cfg_file or "?"
    if "/" not in name:  # the primary config itself (--config-name)
        return UserError(f"no config named {name!r} in the configs directory")
    group, option = name.rsplit("/", 1)
    options = ", ".join(error.options or []) or "none"
    return UserError(f"unknown option {group}={option}; the options of {group!r} are: {options}")


def _user_error_inside(error: BaseException) -> UserError | None:
    """A UserError that a resolver raised, which OmegaConf wraps in its own error."""
    inner = error.__cause__ or error.__context__
    for _ in range(5):  # a short chain: Hydra's wrapper, OmegaConf's, the resolver's
        if inner is None or isinstance(inner, UserError):
            return inner
        inner = inner.__cause__ or inner.__context__
    return None


def from_hydra_error(error: BaseException, command: str = "train") -> UserError | None:
    """A one-line UserError for a composition error of Hydra or OmegaConf, else None.
    `command`: the module under vae_lab whose config it is, named in the hints."""
    raised = _user_error_inside(error) if isinstance(error, OmegaConfBaseException) else None
    if raised is not None:  # e.g. ${slurm_gpus:...} refusing trainer.devices=auto
        return raised
    if isinstance(error, MissingConfigException):
        return _missing_config(error)
    if isinstance(error, OverrideParseException):
        return UserError(
            f"cannot parse the override {error.override!r}: {_first_line(error)}; write "
            "key=value or group=option (quote values holding spaces or brackets)"
        )
    cause = error.__cause__ if isinstance(error, ConfigCompositionException) else error
    if isinstance(
        cause, (ConfigKeyError, ConfigAttributeError)
    ):  # a key that the node does not have
        key = str(getattr(cause, "key", None) or "")
        parent = getattr(cause, "parent_node", None)
        return _unknown_key(cause.full_key or key, key, parent, command)
    if isinstance(cause, OmegaConfBaseException):  # a wrong type, a missing value, ...
        where = getattr(cause, "full_key", None)
        prefix = f"bad value for {where}: " if where else "bad config: "
        return UserError(prefix + _first_line(cause))
    if isinstance(error, ConfigCompositionException):
        return UserError(f"cannot compose the config: {_first_line(error)}")
    return None


@contextmanager
def reported(command: str = "train") -> Iterator[None]:
    """Run Hydra's entry point, turning its composition errors (and a run directory it
    cannot create) into one line and exit status 2; anything else propagates unchanged.
    `command`: `python -m vae_lab.<command>`, named in the hints."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (HydraException, OmegaConfBaseException, OSError) as e:
        user_error = from_hydra_error(e, command)
        if user_error is None and isinstance(e, OSError):
            user_error = _startup_os_error(e) if _in_hydra_startup(e) else from_os_error(e)
        if user_error is None and isinstance(e, CompactHydraException):
            # e.g. a sweep's JobFailed, re-raised once the other jobs are done: its message
            # is the whole story, as Hydra would print it without HYDRA_FULL_ERROR
            message = " ".join(str(e).split())
            print(message if message.startswith("error:") else f"error: {message}", file=sys.stderr)
            raise SystemExit(1) from None
        if user_error is None:
            raise
        report_and_exit(user_error)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous

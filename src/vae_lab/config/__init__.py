"""The configs of the commands: typed schemas (`schemas`, importing nothing else of vae_lab),
the checks of their values (`checks`), and their registration with Hydra (`store`).

Importing this package loads the schemas only; the names of `schemas` are re-exported here.
A name that moved to `checks` or `store` answers with one line naming where it is now.
"""

from __future__ import annotations

from vae_lab.config.schemas import *  # noqa: F403

# names this module had before it became a package -> the module that has them now
MOVED = {
    "validate": "vae_lab.config.checks",
    "check_eval": "vae_lab.config.checks",
    "check_runtime": "vae_lab.config.checks",
    "register_schemas": "vae_lab.config.store",
}


def __getattr__(name: str) -> object:
    if name in MOVED:
        # ImportError, not AttributeError: `from vae_lab.config import validate` shows its
        # message, where Python would replace an AttributeError's by its own
        raise ImportError(f"vae_lab.config.{name} is now {MOVED[name]}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Where the commands read their Hydra configs.

In a clone (an editable install, or `src/` on the path) that is the top-level `configs/`
folder the user edits. An installed wheel carries the same files as the package
`vae_lab.configs` (setup.py maps it onto `configs/`), unpacked in site-packages. Either
way the answer is a directory on disk, so `hydra.main`, `initialize_config_dir` and a
user's own `hydra.searchpath` entries all work the same.
"""

from __future__ import annotations

from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from vae_lab.cli.errors import UserError

PRIMARY = "train.yaml"  # present in every complete config directory


def clone_configs() -> Path | None:
    """`configs/` of the source tree this module was imported from, if it is one."""
    package = Path(__file__).resolve().parents[1]  # .../src/vae_lab
    configs = package.parents[1] / "configs"
    if package.parent.name == "src" and (configs / PRIMARY).is_file():
        return configs
    return None


def shipped_configs() -> Path | None:
    """The `vae_lab.configs` package's directory, where the installed wheel put it."""
    if find_spec("vae_lab.configs") is None:
        return None
    path = Path(str(resources.files("vae_lab.configs")))
    return path if (path / PRIMARY).is_file() else None


def config_dir() -> str:
    """The configs directory as an absolute path; a UserError when there is none."""
    found = clone_configs() or shipped_configs()
    if found is None:
        raise UserError(
            "vae_lab's configs are missing: neither a clone's configs/ beside src/ nor the "
            "vae_lab.configs package of a wheel was found; reinstall with `pip install .` "
            "from the clone, or `pip install vae_lab-*.whl`"
        )
    return str(found)

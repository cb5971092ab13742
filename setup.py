"""The packages of the wheel: src/vae_lab's, and configs/ as `vae_lab.configs`.

configs/ stays the top-level folder a user of the clone edits; the wheel ships the same
files as the package `vae_lab.configs` (every config group a subpackage of it), which the
commands read through Hydra's `pkg://vae_lab.configs` search path. Everything else about
the package is in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONFIGS = ["vae_lab.configs"] + [
    f"vae_lab.{group}" for group in find_namespace_packages(".", include=["configs.*"])
]

setup(
    packages=[*find_packages("src"), *CONFIGS],
    package_dir={"": "src", "vae_lab.configs": "configs"},
)

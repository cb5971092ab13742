"""The packages of the wheel: src/vae_lab's, configs/ as `vae_lab.configs`, and the folders
of the shipped models.

configs/ stays the top-level folder a user of the clone edits; the wheel ships the same
files as the package `vae_lab.configs` (every config group a subpackage of it), which the
commands read through Hydra's `pkg://vae_lab.configs` search path. Each shipped model's
folder `src/vae_lab/pretrained/<name>/` (model.ckpt, card.json, no Python) is listed as a
package of its own, as the config groups are, so that setuptools takes it as data of the
wheel rather than warning of a package it would ignore. Everything else about the package
is in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONFIGS = ["vae_lab.configs"] + [
    f"vae_lab.{group}" for group in find_namespace_packages(".", include=["configs.*"])
]
MODELS = find_namespace_packages(
    "src", include=["vae_lab.pretrained.*"], exclude=["*.__pycache__", "*.*.*.*"]
)

setup(
    packages=[*find_packages("src"), *MODELS, *CONFIGS],
    package_dir={"": "src", "vae_lab.configs": "configs"},
)

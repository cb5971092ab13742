"""The API reference names every module of the package, so a new module gets a page entry."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src" / "vae_lab"


def test_every_module_has_an_api_reference_entry() -> None:
    documented = set()
    for page in (REPO / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (vae_lab[\w.]*)", page.read_text(), flags=re.M))
    modules = set()
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        if parts[-1] != "__main__":  # a command's script; its package's page covers it
            modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert sorted(modules - documented) == []
    assert sorted(documented - modules) == []  # and no entry for a module that is gone

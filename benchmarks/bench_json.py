"""Where the benchmarks put their figures: one JSON file, one key per benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def store(out: Path, key: str, figures: dict[str, Any]) -> None:
    """Print `figures` and write them under `key` of `out`, keeping the other keys there."""
    print(json.dumps(figures, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(out.read_text()) if out.is_file() else {}
    merged[key] = figures
    out.write_text(json.dumps(merged, indent=2) + "\n")

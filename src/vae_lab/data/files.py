"""Where the four Fashion-MNIST IDX files are found, and how they are fetched.

Search order: ``data.root`` when given; else the directory of Debian's
``dataset-fashion-mnist`` package; else the download cache, filled by torchvision's
downloader when ``data.download=true``. Each place may hold the files flat, or in
torchvision's ``FashionMNIST/raw/`` layout, gzip-compressed or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vae_lab.cli.errors import UserError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class SplitFiles:
    images: Path
    labels: Path


def _find_in(directory: Path) -> dict[str, SplitFiles] | None:
    """The four files in `directory` (flat or torchvision layout), or None if any is missing."""
    for base in (directory, directory / "FashionMNIST" / "raw"):
        found: dict[str, Path] = {}
        for stem in (s for pair in SPLIT_FILES.values() for s in pair):
            for name in (f"{stem}.gz", stem):
                if (base / name).is_file():
                    found[stem] = base / name
                    break
        if len(found) == 4:
            return {
                split: SplitFiles(found[images], found[labels])
                for split, (images, labels) in SPLIT_FILES.items()
            }
    return None


def locate(root: str | None, cache_dir: str, download: bool) -> dict[str, SplitFiles]:
    """Find the IDX files, downloading them into `cache_dir` if allowed; else a UserError."""
    candidates = [Path(root)] if root else [SYSTEM_DIR, Path(cache_dir)]
    for directory in candidates:
        files = _find_in(directory)
        if files is not None:
            return files
    if download and not root:
        _download(Path(cache_dir))
        files = _find_in(Path(cache_dir))
        if files is not None:
            return files
    looked = ", ".join(str(d) for d in candidates)
    raise UserError(
        f"Fashion-MNIST IDX files not found (looked in: {looked}). Run `make data` to fetch "
        "them, or pass data.root=DIR (a directory holding the four *-ubyte[.gz] files), "
        "or data.download=true to download them with torchvision"
    )


def _download(cache_dir: Path) -> None:
    """Fetch the files with torchvision (needs a network)."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(root=str(cache_dir), train=True, download=True)
        FashionMNIST(root=str(cache_dir), train=False, download=True)
    except (OSError, RuntimeError) as e:
        raise UserError(
            f"downloading Fashion-MNIST into {cache_dir} failed ({e}); on a machine without "
            "a network, install Debian's dataset-fashion-mnist package (`make data`) or copy "
            "the four IDX files and pass data.root=DIR"
        ) from e


def main() -> None:
    """`python -m vae_lab.data.files [DIR]`: download into DIR (default data/) and report."""
    import sys

    from vae_lab.cli.errors import report_and_exit

    cache_dir = sys.argv[1] if len(sys.argv) > 1 else "data"
    try:
        files = locate(root=None, cache_dir=cache_dir, download=True)
    except UserError as e:
        report_and_exit(e)
    print(f"Fashion-MNIST available: {files['train'].images.parent}")


if __name__ == "__main__":
    main()

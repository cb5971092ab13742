"""The IDX reader: round trips, and every way a file can be broken."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from vae_lab.data.idx import IdxFormatError, read_idx, write_idx


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    values = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    write_idx(tmp_path / name, values)
    assert torch.equal(read_idx(tmp_path / name, expected_ndim=3), values)


def test_header_is_the_published_layout(tmp_path: Path) -> None:
    write_idx(tmp_path / "l", torch.tensor([3, 1, 4], dtype=torch.uint8))
    assert (tmp_path / "l").read_bytes() == bytes.fromhex("00000801 00000003 030104")


def _write(tmp_path: Path, payload: bytes, gz: bool = False) -> Path:
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize(
    ("payload", "ndim", "message"),
    [
        (bytes.fromhex("00000803 00000002 00000002 00000002") + bytes(7), 3, "truncated"),
        (bytes.fromhex("00000803 00000001 00000002 00000002") + bytes(9), 3, "longer than"),
        (bytes.fromhex("00000d03 00000001 00000001 00000001") + bytes(1), 3, "magic number"),
        (bytes.fromhex("00000801 00000003") + bytes(3), 3, "magic number"),
        (bytes.fromhex("00000803 00000001"), 3, "ends inside its header"),
        (b"\x00\x00", 1, "too short"),
    ],
)
def test_broken_files_are_rejected(tmp_path: Path, payload: bytes, ndim: int, message: str) -> None:
    with pytest.raises(IdxFormatError, match=message):
        read_idx(_write(tmp_path, payload), expected_ndim=ndim)


def test_truncated_gzip_is_rejected(tmp_path: Path) -> None:
    good = gzip.compress(bytes.fromhex("00000801 00000004") + bytes(4))
    path = tmp_path / "f.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(IdxFormatError, match="corrupt or truncated"):
        read_idx(path, expected_ndim=1)


def test_not_gzip_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "f.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(IdxFormatError, match="corrupt or truncated"):
        read_idx(path, expected_ndim=1)

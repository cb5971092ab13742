"""Reader for the IDX format of (Fashion-)MNIST, strict about what it accepts.

Layout (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 <dtype> <ndim>``,
then ``ndim`` big-endian uint32 sizes, then the values in C order. Only unsigned bytes
(dtype 0x08) occur in these data sets. Files may be gzip-compressed (``.gz``) or raw.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import torch

from vae_lab.cli.errors import UserError

UBYTE = 0x08


class IdxFormatError(UserError):
    """An IDX file that is corrupt, truncated or not what was expected."""


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise IdxFormatError(
            f"cannot read {path}: {e}. The file is corrupt or truncated; delete it and run "
            "`make data` to fetch a fresh copy"
        ) from e


def read_idx(path: str | Path, expected_ndim: int) -> torch.Tensor:
    """Read one IDX file of unsigned bytes into a uint8 tensor, validating header and length."""
    path = Path(path)
    raw = _read_bytes(path)
    fix = "delete it and run `make data` to fetch a fresh copy"
    if len(raw) < 4:
        raise IdxFormatError(f"{path} is too short to be an IDX file ({len(raw)} bytes); {fix}")
    zero0, zero1, dtype, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or dtype != UBYTE or ndim != expected_ndim:
        raise IdxFormatError(
            f"{path} has magic number 0x{raw[:4].hex()}, expected 0x000008{expected_ndim:02x} "
            f"(unsigned bytes, {expected_ndim} dimensions); {fix}"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError(f"{path} ends inside its header; {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected = header_len + int(torch.Size(shape).numel())
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise IdxFormatError(
            f"{path} is {what}: header {tuple(shape)} needs {expected} bytes, file has "
            f"{len(raw)}; {fix}"
        )
    # bytearray: torch.frombuffer wants a writable buffer; one copy, then zero-copy view.
    values = torch.frombuffer(bytearray(raw[header_len:]), dtype=torch.uint8)
    return values.reshape(shape)


def write_idx(path: str | Path, values: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    if values.dtype != torch.uint8:
        raise ValueError(f"IDX writer takes uint8 tensors, got {values.dtype}")
    header = bytes([0, 0, UBYTE, values.dim()]) + struct.pack(f">{values.dim()}I", *values.shape)
    payload = header + values.contiguous().numpy().tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)

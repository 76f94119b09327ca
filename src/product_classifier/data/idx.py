"""Strict reader for the IDX format that (Fashion-)MNIST ships in, gzip-compressed or raw.

Format: 2 zero bytes, a dtype byte (0x08 = uint8), a byte with the number of dimensions, then one
big-endian uint32 per dimension, then the data. Anything that does not match exactly — magic,
dimensions, payload length, the gzip stream itself — raises :class:`DatasetError` instead of
returning a silently wrong array.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from product_classifier.constants import IMAGE_SIZE
from product_classifier.data.errors import FETCH_COMMAND, DatasetError

IdxKind = Literal["images", "labels"]

IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension (N,)
UINT8_DTYPE = 0x08
_MAGIC = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}
_NDIM = {"images": 3, "labels": 1}

GZIP_MAGIC = b"\x1f\x8b"
# The largest real file (train images) is 47,040,016 bytes uncompressed; refusing more than this
# keeps a hostile or broken .gz from expanding into gigabytes of memory.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


class CorruptFileError(DatasetError):
    """A file exists but its bytes are wrong. ``problem`` is the bare reason, without the fix."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(
            f"{name}: {problem}. The file is corrupt or incomplete; delete it and re-run "
            f"`{FETCH_COMMAND}` to import or download a verified copy."
        )
        self.name = name
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.name, self.problem))


def corrupt(name: str, problem: str) -> CorruptFileError:
    return CorruptFileError(name, problem)


def gunzip(data: bytes, name: str, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """Decompress a (possibly multi-member) gzip stream, checking CRC, length and completeness."""
    chunks: list[bytes] = []
    total = 0
    rest = data
    while True:
        # wbits=31: gzip container, so zlib itself checks the CRC-32 and size trailer.
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(rest, max_bytes - total + 1)
        except zlib.error as exc:
            raise corrupt(name, f"the gzip data is damaged ({exc})") from exc
        total += len(out)
        if total > max_bytes:
            raise corrupt(name, f"it decompresses to more than {max_bytes} bytes")
        chunks.append(out)
        if not inflater.eof:
            raise corrupt(name, "the gzip stream is truncated (it ends before its end marker)")
        rest = inflater.unused_data
        # gzip tools tolerate zero padding after the last member (tape blocking); so do we.
        if not rest.strip(b"\0"):
            return b"".join(chunks)
        if not rest.startswith(GZIP_MAGIC):
            raise corrupt(name, f"{len(rest)} bytes of garbage follow the gzip stream")


def read_payload(source: str | Path | bytes, name: str | None = None) -> bytes:
    """The uncompressed IDX bytes of a file or buffer; gzip is detected by its magic bytes."""
    if isinstance(source, bytes):
        data, name = source, name or "<bytes>"
    else:
        path = Path(source)
        name = name or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DatasetError(
                f"{name}: cannot be read ({exc.strerror or exc}). Check the path and its "
                f"permissions, or re-run `{FETCH_COMMAND}`."
            ) from exc
    return gunzip(data, name) if data.startswith(GZIP_MAGIC) else data


def check_idx(
    payload: bytes, expected_kind: IdxKind, name: str = "<bytes>", expected_count: int | None = None
) -> tuple[int, tuple[int, ...]]:
    """Validate uncompressed IDX bytes without copying them; returns (header length, dims)."""
    if len(payload) < 4:
        raise corrupt(name, f"it is {len(payload)} bytes long, too short for an IDX header")
    magic = struct.unpack(">I", payload[:4])[0]
    zeros, dtype, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zeros != 0:
        raise corrupt(name, f"it is not an IDX file (magic number 0x{magic:08x})")
    if dtype != UINT8_DTYPE:
        raise corrupt(name, f"its IDX data type is 0x{dtype:02x}, expected 0x08 (unsigned byte)")
    if magic != _MAGIC[expected_kind]:
        raise corrupt(
            name,
            f"expected {expected_kind} (magic {_MAGIC[expected_kind]}, {_NDIM[expected_kind]} "
            f"dimensions) but the magic number is {magic} ({ndim} dimensions)",
        )
    header_len = 4 + 4 * ndim
    if len(payload) < header_len:
        raise corrupt(name, "the IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", payload[4:header_len])
    if expected_kind == "images" and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise corrupt(
            name, f"images are {dims[1]}x{dims[2]}, expected {IMAGE_SIZE}x{IMAGE_SIZE} pixels"
        )
    if expected_count is not None and dims[0] != expected_count:
        raise corrupt(name, f"it holds {dims[0]} {expected_kind}, expected {expected_count}")
    expected_len = header_len + int(np.prod(dims, dtype=np.int64))
    if len(payload) < expected_len:
        raise corrupt(
            name,
            f"the data is truncated: the header promises {expected_len - header_len} bytes, "
            f"only {len(payload) - header_len} are present",
        )
    if len(payload) > expected_len:
        raise corrupt(name, f"{len(payload) - expected_len} unexpected bytes follow the data")
    return header_len, dims


def parse_idx(
    payload: bytes, expected_kind: IdxKind, name: str = "<bytes>", expected_count: int | None = None
) -> np.ndarray:
    """Uncompressed IDX bytes -> writable uint8 array [N, 28, 28] (images) or [N] (labels)."""
    header_len, dims = check_idx(payload, expected_kind, name, expected_count)
    # Copy: frombuffer over bytes is read-only, and training code (torch.from_numpy) needs to own
    # a writable array.
    return np.frombuffer(payload, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def read_idx(
    path_or_bytes: str | Path | bytes,
    expected_kind: IdxKind,
    *,
    name: str | None = None,
    expected_count: int | None = None,
) -> np.ndarray:
    """Read an IDX file (gzip or raw) or buffer, checking it strictly; see :func:`parse_idx`."""
    if name is None and not isinstance(path_or_bytes, bytes):
        name = str(path_or_bytes)
    name = name or "<bytes>"
    return parse_idx(read_payload(path_or_bytes, name), expected_kind, name, expected_count)

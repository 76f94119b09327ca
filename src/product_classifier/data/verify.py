"""Checking dataset files against pinned checksums, and remembering which files passed.

Hashing ~30 MB of gzip (47 MB once inflated) costs a fraction of a second, but every command of
the pipeline loads the data, so results are remembered per process and in a small
``.verified.json`` next to the files. Both are keyed by the file's identity (device, inode, size,
mtime): replacing or editing a file changes the key, so it is verified again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from product_classifier.data.errors import FETCH_COMMAND, DatasetError
from product_classifier.data.idx import (
    GZIP_MAGIC,
    CorruptFileError,
    IdxKind,
    check_idx,
    parse_idx,
    read_payload,
)

log = logging.getLogger(__name__)

Split = Literal["train", "test"]
CACHE_FILENAME = ".verified.json"
_CACHE_VERSION = 1

# (realpath, dev, inode, size, mtime_ns) -> payload sha256, for files verified by this process.
_memo: dict[tuple[str, int, int, int, int], str] = {}


@dataclass(frozen=True)
class FileSpec:
    """One dataset file and the facts that prove a copy of it is the real one."""

    name: str  # IDX name without ".gz", e.g. "train-images-idx3-ubyte"
    split: Split
    kind: IdxKind
    count: int
    payload_sha256: str  # of the decompressed IDX bytes
    official_gz_md5: str  # of the .gz as published upstream

    @property
    def gz_name(self) -> str:
        return f"{self.name}.gz"

    @property
    def filenames(self) -> tuple[str, str]:
        """Accepted names in a data directory, in order of preference."""
        return (self.gz_name, self.name)


def find_file(directory: Path, spec: FileSpec) -> Path | None:
    for filename in spec.filenames:
        path = directory / filename
        if path.is_file():
            return path
    return None


def verify_bytes(data: bytes, spec: FileSpec, name: str) -> tuple[str, bytes]:
    """Check a candidate copy (gzip or raw IDX); returns (payload sha256, payload).

    Accepted when the decompressed payload has the pinned SHA-256, or when the file is a .gz
    whose MD5 is the one upstream publishes. Two rules because Debian's package recompressed the
    .gz files: their MD5s differ from upstream's while the IDX bytes inside are identical, so the
    payload hash is what identifies the data; a byte-exact upstream .gz is accepted on upstream's
    own word even if it were ever re-released with a payload we have not measured.
    """
    payload = read_payload(data, name)
    check_idx(payload, spec.kind, name, spec.count)
    sha = hashlib.sha256(payload).hexdigest()
    if sha == spec.payload_sha256:
        return sha, payload
    official_md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()  # published checksum
    if data.startswith(GZIP_MAGIC) and official_md5 == spec.official_gz_md5:
        return sha, payload
    raise CorruptFileError(
        name,
        f"checksum mismatch: the decompressed data has SHA-256 {sha}, expected "
        f"{spec.payload_sha256}, and it is not the official upstream .gz either",
    )


def _key(path: Path) -> tuple[str, int, int, int, int]:
    st = path.stat()
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_cache(directory: Path) -> dict[str, Any]:
    try:
        cache = json.loads((directory / CACHE_FILENAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get("version") != _CACHE_VERSION:
        return {}
    files = cache.get("files")
    return files if isinstance(files, dict) else {}


def _cached_sha(path: Path, key: tuple[str, int, int, int, int], spec: FileSpec) -> str | None:
    if _memo.get(key) is not None:
        return _memo[key]
    entry = _read_cache(path.parent).get(path.name)
    _, dev, ino, size, mtime_ns = key
    # Only a hit for exactly this file and the pinned hash: an entry left by another dataset
    # version or another copy of the directory cannot vouch for these bytes.
    if (
        isinstance(entry, dict)
        and entry.get("device") == dev
        and entry.get("inode") == ino
        and entry.get("size") == size
        and entry.get("mtime_ns") == mtime_ns
        and entry.get("payload_sha256") == spec.payload_sha256
    ):
        _memo[key] = spec.payload_sha256
        return spec.payload_sha256
    return None


def _remember(path: Path, key: tuple[str, int, int, int, int], sha: str) -> None:
    _memo[key] = sha
    directory = path.parent
    # Read-only places such as /usr/share are re-verified once per process instead.
    if not os.access(directory, os.W_OK):
        return
    files = _read_cache(directory)
    _, dev, ino, size, mtime_ns = key
    files[path.name] = {
        "device": dev,
        "inode": ino,
        "size": size,
        "mtime_ns": mtime_ns,
        "payload_sha256": sha,
    }
    try:
        document = {"version": _CACHE_VERSION, "files": files}
        atomic_write(directory / CACHE_FILENAME, json.dumps(document, indent=1).encode())
    except OSError as exc:  # a cache that cannot be written only costs time
        log.debug("cannot write %s: %s", directory / CACHE_FILENAME, exc)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"{path}: cannot be read ({exc.strerror or exc}). Check its permissions, or delete "
            f"it and re-run `{FETCH_COMMAND}`."
        ) from exc


def verify_file(path: Path, spec: FileSpec, *, use_cache: bool = True) -> str:
    """Payload SHA-256 of a verified file; raises DatasetError if the file is not a good copy."""
    key = _key(path)  # before reading, so a concurrent rewrite can only cause a re-check
    if use_cache and (sha := _cached_sha(path, key, spec)) is not None:
        return sha
    sha, _ = verify_bytes(_read(path), spec, str(path))
    _remember(path, key, sha)
    return sha


def load_verified(path: Path, spec: FileSpec) -> np.ndarray:
    """Read a dataset file into its array, verifying it unless it already passed."""
    key = _key(path)
    data = _read(path)
    if _cached_sha(path, key, spec) is None:
        sha, payload = verify_bytes(data, spec, str(path))
        _remember(path, key, sha)
    else:
        payload = read_payload(data, str(path))
    return parse_idx(payload, spec.kind, str(path), spec.count)


def verify_directory(
    directory: Path, specs: tuple[FileSpec, ...]
) -> tuple[dict[str, str], list[str]]:
    """(name -> payload sha256 for files that verify, problems for the others)."""
    checksums: dict[str, str] = {}
    problems: list[str] = []
    for spec in specs:
        path = find_file(directory, spec)
        if path is None:
            problems.append(f"{spec.gz_name} (or {spec.name}) is missing")
            continue
        try:
            checksums[spec.name] = verify_file(path, spec)
        except CorruptFileError as exc:
            problems.append(f"{path.name}: {exc.problem}")
        except DatasetError as exc:
            problems.append(str(exc))
    return checksums, problems


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and os.replace, so readers (and a
    crash) never see a half-written file under the final name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_verified(directory: Path, filename: str, data: bytes, spec: FileSpec, sha: str) -> Path:
    """Atomically place already-verified bytes in ``directory`` and remember that they passed."""
    path = directory / filename
    atomic_write(path, data)
    for other in spec.filenames:
        # A stale copy under the other accepted name would shadow or duplicate this one.
        if other != filename:
            (directory / other).unlink(missing_ok=True)
    _remember(path, _key(path), sha)
    return path

"""Facts an artifact records about how it was made: code version, libraries, machine."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def git_sha(cwd: str | Path | None = None) -> str | None:
    """The checkout's commit, with '-dirty' if there are uncommitted changes; None outside git."""
    git = shutil.which("git")  # an absolute path: no PATH lookup at run time (bandit B607)
    if git is None:
        return None
    try:
        sha = subprocess.run(
            [git, "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def library_versions(names: tuple[str, ...] = ()) -> dict[str, str]:
    names = names or ("numpy", "torch", "onnx", "onnxruntime", "pillow", "product-classifier")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()

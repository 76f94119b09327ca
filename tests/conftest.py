"""Fixtures every test folder shares: the real Fashion-MNIST, found the way the code finds it.

Tests never name a dataset folder: ``fashion_mnist`` asks the project's own locator
(``data.fashion_mnist.locate_dataset``: ``$PRODUCT_CLASSIFIER_DATA_DIR``, ``./data/fashion-mnist``,
Debian's package), so after ``make data`` on any machine they run on the same files as
training. Without the data they are skipped with the locator's message, except under
``CI=true``, where a missing dataset fails the run instead of hiding the quality gates.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from product_classifier.data.fashion_mnist import FILES, locate_dataset
from product_classifier.data.idx import read_payload
from product_classifier.data.verify import FileSpec, find_file


@dataclass(frozen=True)
class FashionMNISTFiles:
    """The located copy: its folder, and each file as the official .gz or its IDX payload."""

    directory: Path

    def path(self, spec: FileSpec) -> Path:
        found = find_file(self.directory, spec)
        assert found is not None, f"{spec.name} vanished from {self.directory}"
        return found

    def payload(self, spec: FileSpec) -> bytes:
        path = self.path(spec)
        return read_payload(path.read_bytes(), str(path))

    def gz_bytes(self, spec: FileSpec) -> bytes:
        """The file as a .gz (a raw IDX copy is compressed, so a mirror can serve it)."""
        path = self.path(spec)
        if path.name == spec.gz_name:
            return path.read_bytes()
        return gzip.compress(self.payload(spec), mtime=0)

    def write_gz(self, target: Path) -> None:
        """The four files as .gz into ``target`` (a fresh folder the test owns)."""
        target.mkdir(parents=True, exist_ok=True)
        for spec in FILES:
            (target / spec.gz_name).write_bytes(self.gz_bytes(spec))


@pytest.fixture(scope="session")
def fashion_mnist() -> FashionMNISTFiles:
    try:
        # Absolute: tests that chdir or patch the search path still find it.
        return FashionMNISTFiles(locate_dataset().resolve())
    except Exception as exc:  # DatasetNotFoundError lists every place it looked
        message = f"needs the real Fashion-MNIST (`make data`): {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def real_pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real-picture benchmark (dev/test, out-of-scope), rebuilt byte for byte from its
    pinned packages, once per session: the data tests check it, the model tests score on it."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "picture_sets"))
    from build_real_pictures import build_real_pictures

    root = tmp_path_factory.mktemp("real-pictures")
    build_real_pictures(root, quiet=True)
    return root

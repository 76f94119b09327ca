"""Finding, verifying and importing the dataset, with the real files (no network: see
tests/integration/test_fetch_download.py for the download path)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from product_classifier.data import fashion_mnist as fm
from product_classifier.data.errors import DatasetError, DatasetNotFoundError
from product_classifier.data.verify import CACHE_FILENAME, verify_file

LABELS_ONLY = [s for s in fm.FILES if s.kind == "labels"]
IMAGES_ONLY = [s for s in fm.FILES if s.kind == "images"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fashion_mnist) -> Path:
    """No env, an empty working directory, and no system copy unless a test puts one back
    (the real copy is located first, by the project's locator: tests/conftest.py)."""
    monkeypatch.delenv(fm.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv(fm.ENV_MIRRORS, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fm, "SYSTEM_DATA_DIR", tmp_path / "no-system-copy")
    return tmp_path


def link_real(real, directory: Path, specs: list[fm.FileSpec]) -> Path:
    """Symlinks to the real files: they verify like copies, without copying 30 MB per test."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        source = real.path(spec)
        (directory / source.name).symlink_to(source)
    return directory


@pytest.fixture(scope="module")
def real_zip(tmp_path_factory: pytest.TempPathFactory, fashion_mnist) -> Path:
    path = tmp_path_factory.mktemp("archives") / "fashion-mnist.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("fashion-mnist/README.md", "not a dataset file")
        for spec in fm.FILES:
            name = f"fashion-mnist/data/fashion/{spec.gz_name}"
            zf.writestr(name, fashion_mnist.gz_bytes(spec))
    return path


def test_system_copy_is_found(fashion_mnist, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fashion_mnist.directory
    monkeypatch.setattr(fm, "SYSTEM_DATA_DIR", real)
    assert fm.locate_dataset() == real
    assert fm.fetch_dataset(download=False) == real


def test_search_order_explicit_then_env_then_default(
    fashion_mnist, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = link_real(fashion_mnist, isolated / "data" / "fashion-mnist", list(fm.FILES))
    explicit = link_real(fashion_mnist, isolated / "explicit", list(fm.FILES))
    from_env = link_real(fashion_mnist, isolated / "env", list(fm.FILES))
    assert fm.locate_dataset() == default
    monkeypatch.setenv(fm.ENV_DATA_DIR, str(from_env))
    assert fm.locate_dataset() == from_env
    assert fm.locate_dataset(explicit) == explicit


def test_incomplete_or_corrupt_directory_is_skipped(fashion_mnist, isolated: Path) -> None:
    explicit = link_real(fashion_mnist, isolated / "explicit", list(fm.FILES[:3]))
    bad = fm.FILES[3]
    (explicit / bad.gz_name).write_bytes(gzip.compress(b"\0\0\x08\x01" + b"\0" * 4))
    default = link_real(fashion_mnist, isolated / "data" / "fashion-mnist", list(fm.FILES))
    assert fm.locate_dataset(explicit) == default


def test_checksum_mismatch_is_rejected(fashion_mnist, isolated: Path) -> None:
    spec = fm.file_spec("test", "labels")
    payload = bytearray(fashion_mnist.payload(spec))
    payload[100] = (payload[100] + 1) % 10  # still a valid IDX file, one label changed
    path = isolated / spec.gz_name
    path.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        verify_file(path, spec)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_raw_idx_files_are_accepted(fashion_mnist, isolated: Path) -> None:
    directory = isolated / "raw"
    link_real(fashion_mnist, directory, IMAGES_ONLY)
    for spec in LABELS_ONLY:
        (directory / spec.name).write_bytes(fashion_mnist.payload(spec))
    assert fm.locate_dataset(directory) == directory
    images, labels = fm.load_fashion_mnist("test", directory)
    assert images.shape == (10_000, 28, 28) and labels.dtype == np.int64


def test_verification_is_cached_next_to_the_files(
    fashion_mnist, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from product_classifier.data import verify

    directory = isolated / "copy"
    directory.mkdir()
    spec = fm.file_spec("test", "labels")
    path = directory / spec.gz_name
    path.write_bytes(fashion_mnist.gz_bytes(spec))
    assert verify_file(path, spec) == spec.payload_sha256
    entry = json.loads((directory / CACHE_FILENAME).read_text())["files"][spec.gz_name]
    assert entry["size"] == path.stat().st_size

    # A new process (empty memo) trusts the cache entry without reading the file...
    monkeypatch.setattr(verify, "_memo", {})
    monkeypatch.setattr(verify, "_read", lambda p: pytest.fail(f"re-read {p}"))
    assert verify_file(path, spec) == spec.payload_sha256
    # ...but not once the file changed.
    monkeypatch.undo()
    monkeypatch.setattr(verify, "_memo", {})
    path.write_bytes(path.read_bytes() + b"\0\0")  # gzip allows zero padding; size changes
    os.utime(path, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    assert verify_file(path, spec) == spec.payload_sha256
    updated = json.loads((directory / CACHE_FILENAME).read_text())["files"][spec.gz_name]
    assert updated["size"] == entry["size"] + 2


def test_zip_archive_is_imported(isolated: Path, real_zip: Path) -> None:
    target = fm.fetch_dataset(archive=real_zip, download=False)
    assert target == isolated / "data" / "fashion-mnist"
    assert sorted(p.name for p in target.glob("*.gz")) == sorted(s.gz_name for s in fm.FILES)
    assert not list(target.glob("*.part"))
    assert fm.dataset_checksums(target) == {s.name: s.payload_sha256 for s in fm.FILES}


def test_tar_gz_archive_of_raw_idx_is_imported_into_data_dir(fashion_mnist, isolated: Path) -> None:
    archive = isolated / "fm.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
        for spec in LABELS_ONLY:
            payload = fashion_mnist.payload(spec)
            info = tarfile.TarInfo(f"unpacked/{spec.name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    # The images are already there (an interrupted fetch): only the labels are imported.
    target = link_real(fashion_mnist, isolated / "mine", IMAGES_ONLY)
    assert fm.fetch_dataset(target, archive=archive, download=False) == target
    assert all((target / s.name).is_file() for s in LABELS_ONLY)
    labels = fm.load_labels("train", target)
    assert np.bincount(labels).tolist() == [6000] * 10


@pytest.mark.parametrize(
    "member", ["../evil/t10k-labels-idx1-ubyte.gz", "/tmp/t10k-labels-idx1-ubyte.gz"]
)
def test_path_traversal_archive_is_refused(fashion_mnist, isolated: Path, member: str) -> None:
    archive = isolated / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        # ZipInfo directly: ZipFile.write would strip the leading "/" for us.
        zf.writestr(zipfile.ZipInfo(member), fashion_mnist.gz_bytes(fm.file_spec("test", "labels")))
    with pytest.raises(DatasetNotFoundError) as info:
        fm.fetch_dataset(archive=archive, download=False)
    assert "path traversal" in str(info.value)
    assert not (isolated.parent / "evil").exists()
    assert not (isolated / "data").exists()  # the failed fetch removed what it created


def test_tar_symlink_escaping_is_refused(isolated: Path) -> None:
    archive = isolated / "links.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("t10k-labels-idx1-ubyte.gz")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(DatasetNotFoundError, match="path traversal"):
        fm.fetch_dataset(archive=archive, download=False)


def test_corrupt_member_is_not_imported(fashion_mnist, isolated: Path) -> None:
    archive = isolated / "bad.zip"
    good = fashion_mnist.gz_bytes(fm.file_spec("test", "labels"))
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("t10k-labels-idx1-ubyte.gz", good[: len(good) // 2])
    with pytest.raises(DatasetNotFoundError) as info:
        fm.fetch_dataset(archive=archive, download=False)
    assert "t10k-labels-idx1-ubyte.gz: the gzip stream is truncated" in str(info.value)
    assert not (isolated / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_not_found_lists_every_place_and_every_fix(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = isolated / "env-dir"
    from_env.mkdir()
    monkeypatch.setenv(fm.ENV_DATA_DIR, str(from_env))
    not_an_archive = isolated / "notes.txt"
    not_an_archive.write_text("hello")

    with pytest.raises(DatasetNotFoundError) as info:
        fm.fetch_dataset(archive=not_an_archive, download=False)

    places = [a.place for a in info.value.attempts]
    assert places[:3] == [
        f"{from_env} ({fm.ENV_DATA_DIR})",
        f"{isolated / 'data' / 'fashion-mnist'} (default)",
        f"{isolated / 'no-system-copy'} (Debian package dataset-fashion-mnist)",
    ]
    assert places[3] == f"archive {not_an_archive}"
    assert places[4] == "download"
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) is missing" in message
    assert "does not exist" in message and "not a zip or tar archive" in message
    assert "disabled (--no-download)" in message
    for fix in ("apt-get install dataset-fashion-mnist", "--archive", "--data-dir", fm.ENV_MIRRORS):
        assert fix in message
    # The files go where the user asked, not to the default.
    assert not (isolated / "data").exists()


def test_unwritable_target_is_reported(isolated: Path) -> None:
    blocker = isolated / "file"
    blocker.write_text("")
    with pytest.raises(DatasetNotFoundError, match="cannot be created"):
        fm.fetch_dataset(blocker / "sub", download=False)


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        fm.load_fashion_mnist("validation")  # type: ignore[arg-type]


def test_errors_survive_pickling() -> None:
    import pickle

    from product_classifier.data.errors import Attempt
    from product_classifier.data.idx import CorruptFileError

    error = DatasetNotFoundError([Attempt("here", "missing")], ["fix it"])
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.attempts == error.attempts
    corrupt = pickle.loads(pickle.dumps(CorruptFileError("f.gz", "truncated")))
    assert corrupt.problem == "truncated" and str(corrupt).startswith("f.gz: truncated.")

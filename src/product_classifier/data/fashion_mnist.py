"""Fashion-MNIST: where to find it, how to get it, and proof that a copy is the real one.

Order of search (the first directory whose four files all verify wins):

1. ``data_dir`` (``--data-dir``), or else ``$PRODUCT_CLASSIFIER_DATA_DIR``;
2. ``./data/fashion-mnist`` (where ``fetch`` puts what it imports or downloads);
3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package).

A directory may hold the files as ``.gz`` or as raw IDX. :func:`fetch_dataset` fills the target
directory from ``--archive`` and then from the official mirrors, only with files that verify.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from product_classifier.data.archive import ARCHIVE_FORMATS, import_archive
from product_classifier.data.download import download_file
from product_classifier.data.errors import Attempt, DatasetError, DatasetNotFoundError
from product_classifier.data.verify import (
    FileSpec,
    Split,
    find_file,
    install_verified,
    load_verified,
    verify_directory,
)

log = logging.getLogger(__name__)

ENV_DATA_DIR = "PRODUCT_CLASSIFIER_DATA_DIR"
ENV_MIRRORS = "PRODUCT_CLASSIFIER_DATA_MIRRORS"  # comma- or space-separated base URLs
DEFAULT_DATA_DIR = Path("data/fashion-mnist")  # relative to the working directory
SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

OFFICIAL_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)

# payload_sha256: SHA-256 of the decompressed IDX bytes, measured from the real data. This is the
# identity of the dataset: Debian's package recompressed the .gz files, so their MD5s differ from
# the ones upstream publishes while the bytes inside are the same. official_gz_md5: upstream's
# published MD5 of its .gz files, so that a byte-exact upstream download is recognised as such.
FILES: tuple[FileSpec, ...] = (
    FileSpec(
        name="train-images-idx3-ubyte",
        split="train",
        kind="images",
        count=60_000,
        payload_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        official_gz_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    FileSpec(
        name="train-labels-idx1-ubyte",
        split="train",
        kind="labels",
        count=60_000,
        payload_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        official_gz_md5="25c81989df183df01b3e8a0aad5dffbe",
    ),
    FileSpec(
        name="t10k-images-idx3-ubyte",
        split="test",
        kind="images",
        count=10_000,
        payload_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        official_gz_md5="bef4ecab320f06d8554ea6380940ec79",
    ),
    FileSpec(
        name="t10k-labels-idx1-ubyte",
        split="test",
        kind="labels",
        count=10_000,
        payload_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        official_gz_md5="bb300cfdad3c16e7a12a480ee83cd310",
    ),
)


def file_spec(split: Split, kind: str) -> FileSpec:
    for spec in FILES:
        if spec.split == split and spec.kind == kind:
            return spec
    raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")


def _explicit_dir(data_dir: str | Path | None) -> tuple[Path, str] | None:
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]), ENV_DATA_DIR
    return None


def _candidates(data_dir: str | Path | None) -> list[tuple[Path, str]]:
    """Directories to search, labelled with where they came from, duplicates removed."""
    explicit = _explicit_dir(data_dir)
    ordered = [
        *([explicit] if explicit else []),
        (Path.cwd() / DEFAULT_DATA_DIR, "default"),
        (SYSTEM_DATA_DIR, f"Debian package {DEBIAN_PACKAGE}"),
    ]
    unique: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for path, label in ordered:
        path = path.expanduser().absolute()
        if (real := os.path.realpath(path)) not in seen:
            seen.add(real)
            unique.append((path, label))
    return unique


def _check_dir(path: Path) -> str | None:
    """None if ``path`` holds four verified files, else the reason it does not."""
    if not path.is_dir():
        return "does not exist" if not path.exists() else "is not a directory"
    _, problems = verify_directory(path, FILES)
    return "; ".join(problems) or None


def _search(data_dir: str | Path | None, attempts: list[Attempt]) -> Path | None:
    for path, label in _candidates(data_dir):
        reason = _check_dir(path)
        if reason is None:
            return path
        attempts.append(Attempt(f"{path} ({label})", reason))
        if label != "default" and not label.startswith("Debian"):
            # The user named this directory; say why another one ends up being used.
            log.warning("not using %s (%s): %s", path, label, reason)
    return None


def _hints(download: bool) -> list[str]:
    network = (
        "allow network access to one of the mirrors"
        if download
        else "run without --no-download so the official mirrors are tried"
    )
    return [
        f"install the system package: sudo apt-get install {DEBIAN_PACKAGE} "
        f"(it provides {SYSTEM_DATA_DIR})",
        f"import a copy you already have: product-classifier data fetch --archive FILE "
        f"({ARCHIVE_FORMATS} holding the four .gz or raw IDX files)",
        f"use a directory that holds the four files: --data-dir DIR or {ENV_DATA_DIR}=DIR",
        f"{network}, or list reachable mirrors in {ENV_MIRRORS} (comma-separated base URLs)",
    ]


def locate_dataset(data_dir: str | Path | None = None) -> Path:
    """The first directory (see module docstring) whose four files all verify; never downloads."""
    attempts: list[Attempt] = []
    found = _search(data_dir, attempts)
    if found is None:
        raise DatasetNotFoundError(attempts, _hints(download=True))
    return found


def mirrors_from_env() -> tuple[str, ...]:
    raw = os.environ.get(ENV_MIRRORS, "")
    return tuple(part for part in raw.replace(",", " ").split() if part)


def _missing(target: Path) -> tuple[FileSpec, ...]:
    checksums, _ = verify_directory(target, FILES) if target.is_dir() else ({}, [])
    return tuple(spec for spec in FILES if spec.name not in checksums)


def fetch_dataset(
    data_dir: str | Path | None = None,
    archive: str | Path | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """A directory with the four verified files: found, else imported, else downloaded.

    Imports and downloads go to ``data_dir`` (or ``$PRODUCT_CLASSIFIER_DATA_DIR``, or
    ``./data/fashion-mnist``), file by file, so an interrupted fetch resumes where it stopped.
    ``mirrors`` defaults to ``$PRODUCT_CLASSIFIER_DATA_MIRRORS``, else :data:`OFFICIAL_MIRRORS`.
    Raises one DatasetNotFoundError listing every place tried when nothing works.
    """
    attempts: list[Attempt] = []
    found = _search(data_dir, attempts)
    if found is not None:
        if archive is not None:
            log.warning("verified data already in %s; not importing %s", found, archive)
        return found
    explicit = _explicit_dir(data_dir)
    target = (explicit[0] if explicit else Path.cwd() / DEFAULT_DATA_DIR).expanduser().absolute()
    # The outermost directory this call creates, removed again if the fetch fails.
    created = next((d for d in [*reversed(target.parents), target] if not d.exists()), None)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        attempts.append(Attempt(f"{target} (target)", f"cannot be created: {exc}"))
        raise DatasetNotFoundError(attempts, _hints(download)) from exc

    if archive is not None:
        try:
            _, problems = import_archive(Path(archive).expanduser(), target, _missing(target))
            attempts += [Attempt(f"archive {archive}", problem) for problem in problems]
        except DatasetError as exc:
            attempts.append(Attempt(f"archive {archive}", str(exc)))

    missing = _missing(target)
    if missing and not download:
        attempts.append(Attempt("download", "disabled (--no-download)"))
    elif missing:
        urls = tuple(mirrors) if mirrors is not None else mirrors_from_env() or OFFICIAL_MIRRORS
        unreachable: set[str] = set()
        for spec in missing:
            got = download_file(
                spec,
                urls,
                attempts,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                progress=progress,
                unreachable=unreachable,
            )
            if got is not None:
                try:
                    install_verified(target, spec.gz_name, got[0], spec, got[1])
                except OSError as exc:
                    attempts.append(Attempt(f"{target / spec.gz_name}", f"cannot write: {exc}"))

    if _missing(target):
        if created is not None:
            _remove_empty(target, created)
        raise DatasetNotFoundError(attempts, _hints(download))
    return target


def _remove_empty(leaf: Path, top: Path) -> None:
    """Remove ``leaf`` and its parents up to ``top`` while they are empty, so a failed fetch
    leaves no empty directory behind to be mistaken for a dataset."""
    for directory in [leaf, *leaf.parents]:
        try:
            directory.rmdir()
        except OSError:  # not empty (or not ours to remove): stop there
            return
        if directory == top:
            return


def load_fashion_mnist(
    split: Split, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of a split, fetching the data if needed."""
    images_spec, labels_spec = file_spec(split, "images"), file_spec(split, "labels")
    directory = fetch_dataset(data_dir)
    return _load(directory, images_spec), _load(directory, labels_spec).astype(np.int64)


def load_labels(split: Split, data_dir: str | Path | None = None) -> np.ndarray:
    """Labels int64 [N] of a split (cheap: no images are read)."""
    spec = file_spec(split, "labels")
    return _load(fetch_dataset(data_dir), spec).astype(np.int64)


def _load(directory: Path, spec: FileSpec) -> np.ndarray:
    path = find_file(directory, spec)
    if path is None:  # removed after it was verified
        raise DatasetError(f"{directory / spec.gz_name}: disappeared; re-run the command.")
    return load_verified(path, spec)


def dataset_checksums(data_dir: str | Path | None = None) -> dict[str, str]:
    """File name (without .gz) -> SHA-256 of its IDX payload, for model cards.

    ``data_dir`` is a dataset directory such as :func:`locate_dataset` returns (default: that).
    """
    directory = Path(data_dir) if data_dir is not None else locate_dataset()
    checksums, problems = verify_directory(directory, FILES)
    if problems:
        raise DatasetError(f"{directory}: " + "; ".join(problems))
    return checksums

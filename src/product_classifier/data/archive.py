"""Importing the dataset files from an archive the user already has (.zip, .tar, .tar.gz, .tgz).

Files are found by name anywhere inside (``fashion-mnist/data/fashion/train-images-idx3-ubyte.gz``
works as well as a flat archive), as .gz or as raw IDX. Only those members are read, into memory,
and nothing is extracted by path; an archive with a member that would escape the extraction
directory is still refused outright, because it is broken or hostile and nothing in it can be
trusted.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from product_classifier.data.errors import DatasetError
from product_classifier.data.idx import MAX_PAYLOAD_BYTES, CorruptFileError
from product_classifier.data.verify import FileSpec, install_verified, verify_bytes

ARCHIVE_FORMATS = ".zip, .tar, .tar.gz, .tgz"


@dataclass(frozen=True)
class _Member:
    name: str
    read: Callable[[int], bytes]  # read(limit) -> at most limit bytes


def _refuse(archive: Path, problem: str) -> DatasetError:
    return DatasetError(
        f"{archive}: refusing this archive: {problem}. Re-create it with plain relative paths "
        f"(for example `zip -r fashion-mnist.zip fashion-mnist/`) or pass the directory with "
        f"--data-dir instead."
    )


def _check_path(archive: Path, member: str, what: str = "member") -> str:
    normalized = member.replace("\\", "/")
    parts = normalized.split("/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized) or ".." in parts:
        raise _refuse(archive, f"{what} {member!r} points outside the archive (path traversal)")
    return normalized


@contextmanager
def _open_members(archive: Path) -> Iterator[list[_Member]]:
    """Regular-file members of a zip or tar archive, after checking every name is safe."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members: list[_Member] = []
            for info in zf.infolist():
                name = _check_path(archive, info.filename)
                if not info.is_dir():
                    members.append(_Member(name, _zip_reader(zf, info)))
            yield members
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            members = []
            for tinfo in tf.getmembers():
                name = _check_path(archive, tinfo.name)
                if tinfo.issym() or tinfo.islnk():
                    _check_path(archive, tinfo.linkname, f"link {tinfo.name!r} -> target")
                elif tinfo.isfile():
                    members.append(_Member(name, _tar_reader(tf, tinfo)))
            yield members
        return
    raise DatasetError(
        f"{archive}: not a zip or tar archive. Supported formats: {ARCHIVE_FORMATS}, holding "
        "the four Fashion-MNIST files (.gz or raw IDX)."
    )


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[int], bytes]:
    def read(limit: int) -> bytes:
        with zf.open(info) as handle:
            return handle.read(limit)

    return read


def _tar_reader(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[int], bytes]:
    def read(limit: int) -> bytes:
        handle = tf.extractfile(info)
        return handle.read(limit) if handle is not None else b""

    return read


def _install(target: Path, filename: str, data: bytes, spec: FileSpec, sha: str) -> None:
    # Separate from the archive's own OSErrors: a full disk is not a broken archive.
    try:
        install_verified(target, filename, data, spec, sha)
    except OSError as exc:
        raise DatasetError(f"{target}: cannot write {filename} ({exc})") from exc


def import_archive(
    archive: Path, target: Path, specs: tuple[FileSpec, ...]
) -> tuple[list[str], list[str]]:
    """Copy the verified ``specs`` files found in ``archive`` into ``target``.

    Returns (names imported, problems). Raises DatasetError if the archive as a whole is
    unusable: unreadable, not an archive, or unsafe.
    """
    if not archive.is_file():
        raise DatasetError(f"{archive}: no such file. Check the path given to --archive.")
    wanted = {filename: spec for spec in specs for filename in spec.filenames}
    imported: list[str] = []
    problems: list[str] = []
    try:
        with _open_members(archive) as members:
            for spec in specs:
                candidates = [m for m in members if wanted.get(posixpath.basename(m.name)) == spec]
                if not candidates:
                    problems.append(f"{spec.gz_name} (or {spec.name}) is not in the archive")
                    continue
                errors: list[str] = []
                for member in candidates:
                    data = member.read(MAX_PAYLOAD_BYTES + 1)
                    if len(data) > MAX_PAYLOAD_BYTES:
                        errors.append(f"{member.name}: larger than {MAX_PAYLOAD_BYTES} bytes")
                        continue
                    try:
                        sha, _ = verify_bytes(data, spec, f"{archive}:{member.name}")
                    except CorruptFileError as exc:
                        errors.append(f"{member.name}: {exc.problem}")
                        continue
                    _install(target, posixpath.basename(member.name), data, spec, sha)
                    imported.append(spec.name)
                    break
                else:
                    problems.extend(errors)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DatasetError(
            f"{archive}: cannot be read as an archive ({exc}). It may be truncated; get a fresh "
            f"copy or pass the unpacked directory with --data-dir."
        ) from exc
    return imported, problems

"""A catalog folder as a dataset: one sub-folder per category, any names, any image files.

    my-catalog/                      my-catalog/
      hat/    a.jpg b.png ...   or     train/  hat/ ...  watch/ ...
      watch/  ...                      test/   hat/ ...  watch/ ...   (val/ optional)
      scarf/  ...

The left layout is split by :mod:`product_classifier.data.dataset` (stratified, seeded); the
right one keeps the split you made, for example to hold out pictures from other sources.

Every file is checked before training starts, so a broken catalog fails in seconds, not after
an hour of training:

- files that are not images or cannot be decoded are listed, skipped and counted;
- byte-identical files (same SHA-256) under two categories, or in two of your own splits, stop
  the run with both paths: a test picture that is also a training picture measures nothing;
  repeats inside one category and split are kept once and reported;
- a category with fewer than ``min_images_per_class`` usable pictures stops the run with its
  name and count.

Pictures go through the one preprocessing module with the model's input spec, so they look
exactly as the service will make them look.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from product_classifier.preprocessing import (
    IMAGE_EXTENSIONS,
    InputSpec,
    PreprocessConfig,
    PreprocessingError,
    decode_image,
    preprocess_image,
)

SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


class FolderDataError(ValueError):
    """The folder cannot be used as a dataset; the message says what to fix."""


@dataclass
class FolderPicture:
    path: str  # relative to the folder
    category: str
    sha256: str
    split: str | None  # your own split (train/val/test), or None to be split for you


@dataclass
class FolderData:
    """Decoded pictures of a folder, in the spec's canonical uint8 form."""

    root: Path
    categories: tuple[str, ...]  # sorted folder names
    images: np.ndarray  # uint8 [N, *spec.canonical_shape]
    pictures: list[FolderPicture]
    skipped: list[dict[str, str]] = field(default_factory=list)  # path, code, message
    repeats: list[dict[str, str]] = field(default_factory=list)  # path, same_as
    presplit: bool = False

    @property
    def labels(self) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.categories)}
        return np.asarray([index[p.category] for p in self.pictures], dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        """category -> split (or "all") -> pictures."""
        out: dict[str, dict[str, int]] = {c: {} for c in self.categories}
        for p in self.pictures:
            key = p.split or "all"
            out[p.category][key] = out[p.category].get(key, 0) + 1
        return out

    def report(self) -> dict[str, Any]:
        return {
            "folder": str(self.root),
            "layout": "your own train/val/test folders" if self.presplit else "one folder",
            "categories": list(self.categories),
            "pictures": len(self.pictures),
            "per_category": self.counts(),
            "skipped": self.skipped,
            "repeats_dropped": self.repeats,
        }


def _sub_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield path


def scan_folder(root: str | Path) -> tuple[list[tuple[Path, str, str | None]], bool]:
    """Every candidate file as (path, category, own split or None), and whether it is split."""
    root = Path(root)
    if not root.is_dir():
        raise FolderDataError(f"{root} is not a folder")
    tops = _sub_folders(root)
    split_tops = [p for p in tops if p.name.lower() in SPLIT_FOLDERS]
    if split_tops and len(split_tops) != len(tops):
        others = [p.name for p in tops if p not in split_tops]
        raise FolderDataError(
            f"{root} mixes split folders ({[p.name for p in split_tops]}) with category "
            f"folders ({others}); use either one folder per category, or train/ and test/ "
            "(and optionally val/) that each hold one folder per category"
        )
    entries: list[tuple[Path, str, str | None]] = []
    if split_tops:
        names = {p.name.lower() for p in split_tops}
        if "train" not in names:
            raise FolderDataError(f"{root} has {sorted(names)} but no train/ folder")
        for top in split_tops:
            for category in _sub_folders(top):
                for path in _files(category):
                    entries.append((path, category.name, SPLIT_FOLDERS[top.name.lower()]))
        return entries, True
    if not tops:
        raise FolderDataError(
            f"{root} has no category folders: put the pictures of each category in a "
            "sub-folder named after it (e.g. hat/, watch/)"
        )
    for category in tops:
        for path in _files(category):
            entries.append((path, category.name, None))
    return entries, False


def load_folder(
    root: str | Path,
    spec: InputSpec,
    *,
    min_images_per_class: int = 10,
    config: PreprocessConfig | None = None,
    progress: bool = True,
) -> FolderData:
    """Check and decode every picture of ``root`` (see the module docstring for the rules)."""
    root = Path(root)
    entries, presplit = scan_folder(root)
    pictures: list[FolderPicture] = []
    images: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    repeats: list[dict[str, str]] = []
    seen: dict[str, FolderPicture] = {}
    conflicts: list[str] = []
    bar = tqdm(entries, desc=f"checking {root.name}", unit="file", disable=not progress)
    for path, category, split in bar:
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append({"path": rel, "code": "not_an_image", "message": "not an image file"})
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append({"path": rel, "code": "unreadable_file", "message": str(exc)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        first = seen.get(digest)
        if first is not None:
            if first.category == category and first.split == split:
                repeats.append({"path": rel, "same_as": first.path})
            else:
                where = "categories" if first.category != category else "splits"
                conflicts.append(f"{first.path} and {rel} are the same file in two {where}")
            continue
        try:
            image = preprocess_image(decode_image(data, config), config, spec)
        except PreprocessingError as exc:
            skipped.append({"path": rel, "code": exc.code, "message": exc.message})
            continue
        except Exception as exc:  # an exotic mode Pillow opens but cannot convert
            skipped.append({"path": rel, "code": "invalid_image", "message": str(exc)})
            continue
        picture = FolderPicture(path=rel, category=category, sha256=digest, split=split)
        seen[digest] = picture
        pictures.append(picture)
        images.append(image)
    if conflicts:
        shown = "\n  ".join(conflicts[:20])
        more = f"\n  ... and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
        raise FolderDataError(
            f"{len(conflicts)} byte-identical duplicate(s) in {root} would put one picture on "
            f"both sides (remove one copy of each):\n  {shown}{more}"
        )
    categories = tuple(sorted({p.category for p in pictures} | {e[1] for e in entries}))
    _check_counts(root, categories, pictures, presplit, min_images_per_class)
    stacked = np.stack(images) if images else np.zeros((0, *spec.canonical_shape), dtype=np.uint8)
    return FolderData(
        root=root,
        categories=categories,
        images=stacked,
        pictures=pictures,
        skipped=skipped,
        repeats=repeats,
        presplit=presplit,
    )


def _check_counts(
    root: Path,
    categories: tuple[str, ...],
    pictures: list[FolderPicture],
    presplit: bool,
    minimum: int,
) -> None:
    if len(categories) < 2:
        raise FolderDataError(
            f"{root} has {len(categories)} category folder(s) {list(categories)}; a classifier "
            "needs at least 2"
        )
    trainable = Counter(p.category for p in pictures if not presplit or p.split == "train")
    too_few = {c: trainable.get(c, 0) for c in categories if trainable.get(c, 0) < minimum}
    if too_few:
        where = "training pictures" if presplit else "usable pictures"
        listed = ", ".join(f"{c!r}: {n}" for c, n in sorted(too_few.items()))
        raise FolderDataError(
            f"too few {where} (at least {minimum} per category, data.min_images_per_class): "
            f"{listed}; add pictures or remove the folder"
        )
    if presplit:
        missing_test: defaultdict[str, int] = defaultdict(int)
        for p in pictures:
            if p.split == "test":
                missing_test[p.category] += 1
        absent = [c for c in categories if missing_test[c] == 0]
        if any(p.split == "test" for p in pictures) and absent:
            raise FolderDataError(f"test/ has no pictures of {absent}: evaluation needs them")

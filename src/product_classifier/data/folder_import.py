"""Import your own product photos, one folder per category, as Fashion-MNIST-style IDX files.

    my-catalog/
      Sneaker/  IMG_0001.jpg  IMG_0002.png ...
      Bag/      ...
      ankle-boot/ ...

Every photo goes through the service's own preprocessing (:func:`preprocess_image`: decode,
grayscale, invert a light page, crop to the item, fit into 28x28), so the imported images look
exactly like what the model will see in production. The output is a pair of gzip IDX files
(``<prefix>-images-idx3-ubyte.gz``, ``<prefix>-labels-idx1-ubyte.gz``, readable with
:func:`product_classifier.data.idx.read_idx`) and a ``<prefix>-manifest.json`` that lists the
source file of every image and every file that was skipped.

Folder names must name one of the 10 Fashion-MNIST categories (the model's output layer and
the ONNX contract have exactly these 10): the class name in any case and spacing
("T-shirt top", "tshirt_top", "Ankle boots"), or its class id ("0", "6-shirt").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.constants import CLASS_NAMES, IMAGE_SIZE
from product_classifier.preprocessing import (
    IMAGE_EXTENSIONS,
    PreprocessConfig,
    PreprocessingError,
    decode_image,
    preprocess_image,
)

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: uint8 with 3 dims / 1 dim (see data/idx.py)


class FolderImportError(ValueError):
    """The folder layout cannot be imported; the message says what to rename or add."""


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY = {_key(name): i for i, name in enumerate(CLASS_NAMES)}


def category_of(folder_name: str) -> int | None:
    """Folder name -> class id, or None when it names no Fashion-MNIST category."""
    match = re.fullmatch(r"(\d)(?:[-_ .](.*))?", folder_name.strip())
    if match:
        return int(match.group(1))
    key = _key(folder_name)
    for candidate in (key, key.removesuffix("s"), key.removesuffix("es")):
        if candidate in _BY_KEY:
            return _BY_KEY[candidate]
    return None


@dataclass
class ImportResult:
    images: np.ndarray  # uint8 [N, 28, 28], bright item on dark
    labels: np.ndarray  # uint8 [N]
    sources: list[str]  # the photo behind each image, relative to the folder
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "code", "message"}
    folders: dict[str, int] = field(default_factory=dict)  # folder name -> class id

    def counts(self) -> dict[str, int]:
        found = Counter(int(label) for label in self.labels)
        return {CLASS_NAMES[i]: found[i] for i in sorted(found)}


def import_folder(directory: str | Path, config: PreprocessConfig | None = None) -> ImportResult:
    """Read ``directory/<category>/**/<image>`` into canonical 28x28 images and labels.

    Files that are not images, or cannot be decoded, are skipped and listed in ``skipped``;
    a sub-folder that names no category raises :class:`FolderImportError` (a typo would
    otherwise silently drop a whole category).
    """
    root = Path(directory)
    if not root.is_dir():
        raise FolderImportError(f"{root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    mapping = {p.name: category_of(p.name) for p in folders}
    unknown = [name for name, class_id in mapping.items() if class_id is None]
    if unknown:
        raise FolderImportError(
            f"these folders name no category: {unknown}; name each folder after one of "
            f"{list(CLASS_NAMES)} (any case or spacing, plural allowed) or its class id 0-9"
        )
    if not folders:
        raise FolderImportError(f"{root} has no category folders (one folder per category)")

    images: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    skipped: list[dict[str, str]] = []
    for folder in folders:
        class_id = mapping[folder.name]
        assert class_id is not None
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(root).as_posix()
            hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
            if hidden or not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append({"path": rel, "code": "not_an_image", "message": "not an image"})
                continue
            try:
                image = preprocess_image(decode_image(path.read_bytes(), config), config)
            except PreprocessingError as exc:
                skipped.append({"path": rel, "code": exc.code, "message": exc.message})
                continue
            except OSError as exc:
                skipped.append({"path": rel, "code": "unreadable_file", "message": str(exc)})
                continue
            images.append(image)
            labels.append(class_id)
            sources.append(rel)
    stacked = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return ImportResult(
        images=stacked,
        labels=np.asarray(labels, dtype=np.uint8),
        sources=sources,
        skipped=skipped,
        folders={name: int(cid) for name, cid in mapping.items() if cid is not None},
    )


def idx_bytes(array: np.ndarray) -> bytes:
    """uint8 [N, 28, 28] or [N] -> uncompressed IDX bytes (the Fashion-MNIST file format)."""
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"expected uint8 [N] or [N, 28, 28], got {array.dtype} {array.shape}")
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_import(
    result: ImportResult, out_dir: str | Path, prefix: str = "catalog"
) -> dict[str, Path]:
    """Write the IDX pair and the manifest; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "images": out / f"{prefix}-images-idx3-ubyte.gz",
        "labels": out / f"{prefix}-labels-idx1-ubyte.gz",
        "manifest": out / f"{prefix}-manifest.json",
    }
    digests = {}
    for kind, array in (("images", result.images), ("labels", result.labels)):
        payload = idx_bytes(array)
        digests[paths[kind].name.removesuffix(".gz")] = hashlib.sha256(payload).hexdigest()
        # mtime=0: the same photos give byte-identical files.
        paths[kind].write_bytes(gzip.compress(payload, mtime=0))
    manifest: dict[str, Any] = {
        "format": "Fashion-MNIST IDX (gzip); images uint8 [N, 28, 28] bright on dark",
        "count": len(result.sources),
        "per_category": result.counts(),
        "folders": result.folders,
        "payload_sha256": digests,
        "images": [
            {"index": i, "source": src, "class_id": int(label), "category": CLASS_NAMES[label]}
            for i, (src, label) in enumerate(zip(result.sources, result.labels, strict=True))
        ],
        "skipped": result.skipped,
    }
    paths["manifest"].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return paths

"""The training data of one run: Fashion-MNIST, a catalog folder, or both, split three ways.

Every stage that needs data (train, evaluate, export, quantize, search) calls
:func:`load_dataset` with the run's ``data:`` config and input spec, so they all see the same
pictures in the same splits:

- **Fashion-MNIST**: a stratified, seeded ``val_fraction`` of the 60k training images is the
  validation split; the official 10k test images are the test split.
- **A folder** (``data/folder.py``): your own ``train/``/``val/``/``test/`` parts when it has
  them (a missing part is carved from ``train/``), else a stratified, seeded split with
  ``test_fraction`` and ``val_fraction`` of every category.
- **Both**: the two are concatenated per split. Categories are matched by name
  (``folder_import.category_of``: "sneakers" is Fashion-MNIST's Sneaker); other folders become
  new categories after Fashion-MNIST's ten.

The split is written to a manifest (file, category, split, sha256 for every folder picture),
which the checkpoint and the model card pin by its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from product_classifier.constants import CLASS_NAMES
from product_classifier.data.split import fashion_mnist_split, stratified_subset
from product_classifier.preprocessing import (
    FASHION_MNIST_SPEC,
    InputSpec,
    from_fashion_mnist,
    to_model_input,
)

if TYPE_CHECKING:
    from product_classifier.config import DataConfig
    from product_classifier.data.folder import FolderData

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "data_manifest.json"


@dataclass
class Dataset:
    spec: InputSpec
    class_names: tuple[str, ...]
    images: dict[str, np.ndarray]  # split -> uint8 canonical images
    labels: dict[str, np.ndarray]  # split -> int64 class ids
    checksums: dict[str, str]
    manifest: dict[str, Any] = field(default_factory=dict)

    def model_input(self, split: str) -> np.ndarray:
        """float32 [N, C, S, S] of a split, as the ONNX model takes it."""
        return to_model_input(self.images[split], self.spec)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {
                name: int(n)
                for name, n in zip(
                    self.class_names,
                    np.bincount(self.labels[split], minlength=len(self.class_names)),
                    strict=True,
                )
            }
            for split in self.images
        }

    def write_manifest(self, path: Path) -> str:
        """Write the manifest; returns its SHA-256 (what checkpoints and cards pin)."""
        text = json.dumps(self.manifest, indent=1, sort_keys=True) + "\n"
        path.write_text(text, encoding="utf-8")
        return hashlib.sha256(text.encode()).hexdigest()


def class_names_for(data: DataConfig, folder: FolderData | None) -> tuple[tuple[str, ...], dict]:
    """The run's class list and each folder category's class id."""
    from product_classifier.data.folder_import import category_of

    names: list[str] = list(CLASS_NAMES) if data.use_fashion_mnist else []
    mapping: dict[str, int] = {}
    if folder is not None:
        for category in folder.categories:
            known = category_of(category) if data.use_fashion_mnist else None
            if known is None:
                if category not in names:
                    names.append(category)
                known = names.index(category)
            mapping[category] = known
    return tuple(names), mapping


def _fashion_mnist_part(
    data: DataConfig, spec: InputSpec, wanted: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    from product_classifier.data.fashion_mnist import (
        dataset_checksums,
        load_fashion_mnist,
        locate_dataset,
    )

    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    if "train" in wanted or "val" in wanted:
        # The same function every held-out choice reads its validation images from.
        part = fashion_mnist_split(
            {"val_fraction": data.val_fraction, "split_seed": data.split_seed}, data.data_dir
        )
        for split, idx in (("train", part.train_idx), ("val", part.val_idx)):
            if split in wanted:
                images[split], labels[split] = part.images[idx], part.labels[idx].astype(np.int64)
    if "test" in wanted:
        x, y = load_fashion_mnist("test", data_dir=data.data_dir)
        images["test"], labels["test"] = x, y.astype(np.int64)
    if spec != FASHION_MNIST_SPEC:
        images = {split: from_fashion_mnist(arr, spec) for split, arr in images.items()}
    return images, labels, dataset_checksums(locate_dataset(data.data_dir))


def _folder_splits(folder: FolderData, data: DataConfig) -> np.ndarray:
    """The split of every picture of ``folder``: its own, or a stratified seeded draw."""
    labels = folder.labels
    split = np.asarray([p.split or "" for p in folder.pictures], dtype=object)
    if not folder.presplit:
        split[:] = "train"
    for part, fraction in (("test", data.test_fraction), ("val", data.val_fraction)):
        if (split == part).any() or fraction == 0.0:
            continue
        pool = np.flatnonzero(split == "train")
        total_train = len(pool) + sum(int((split == s).sum()) for s in ("val", "test"))
        share = min(0.9, fraction * total_train / max(1, len(pool)))  # of the whole folder
        chosen = stratified_subset(labels[pool], share, data.split_seed + len(part))
        split[pool[chosen]] = part
    return split


def load_dataset(
    data: DataConfig,
    spec: InputSpec = FASHION_MNIST_SPEC,
    *,
    splits: tuple[str, ...] = SPLITS,
    progress: bool = True,
) -> Dataset:
    """Load the splits in ``splits`` of the run's data (see the module docstring)."""
    images: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    labels: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    checksums: dict[str, str] = {}
    manifest: dict[str, Any] = {"input_spec": spec.to_dict(), "sources": []}

    folder: FolderData | None = None
    if data.folder is not None:
        from product_classifier.data.folder import load_folder

        folder = load_folder(
            data.folder, spec, min_images_per_class=data.min_images_per_class, progress=progress
        )
    class_names, mapping = class_names_for(data, folder)
    manifest["class_names"] = list(class_names)

    if data.use_fashion_mnist:
        fm_images, fm_labels, fm_sums = _fashion_mnist_part(data, spec, splits)
        for split in splits:
            images[split].append(fm_images[split])
            labels[split].append(fm_labels[split])
        checksums.update(fm_sums)
        manifest["sources"].append(
            {
                "source": "fashion-mnist",
                "payload_sha256": fm_sums,
                "split": f"stratified {data.val_fraction:g} of train for val (seed "
                f"{data.split_seed}); the official 10k test images",
            }
        )
    if folder is not None:
        assigned = _folder_splits(folder, data)
        ids = np.asarray([mapping[p.category] for p in folder.pictures], dtype=np.int64)
        for split in splits:
            rows = np.flatnonzero(assigned == split)
            images[split].append(folder.images[rows])
            labels[split].append(ids[rows])
        files = [
            {
                "file": p.path,
                "category": p.category,
                "label": int(mapping[p.category]),
                "split": str(assigned[i]),
                "sha256": p.sha256,
            }
            for i, p in enumerate(folder.pictures)
        ]
        report = folder.report()
        manifest["sources"].append(
            {
                "source": "folder",
                "folder": str(folder.root),
                "layout": report["layout"],
                "split": (
                    "your own folders"
                    if folder.presplit
                    else f"stratified: test {data.test_fraction:g}, val {data.val_fraction:g} "
                    f"(seed {data.split_seed})"
                ),
                "skipped": report["skipped"],
                "repeats_dropped": report["repeats_dropped"],
                "files": files,
            }
        )
        listing = "\n".join(f"{f['split']} {f['sha256']} {f['file']}" for f in files)
        checksums["folder_files_sha256"] = hashlib.sha256(listing.encode()).hexdigest()

    out_images: dict[str, np.ndarray] = {}
    out_labels: dict[str, np.ndarray] = {}
    empty = np.zeros((0, *spec.canonical_shape), dtype=np.uint8)
    for split in splits:
        out_images[split] = np.concatenate(images[split]) if images[split] else empty
        out_labels[split] = (
            np.concatenate(labels[split]) if labels[split] else np.zeros(0, np.int64)
        )
    if data.subset_fraction < 1.0:
        for split in ("train", "val"):
            if split in out_images:
                keep = stratified_subset(out_labels[split], data.subset_fraction, data.split_seed)
                out_images[split] = out_images[split][keep]
                out_labels[split] = out_labels[split][keep]
    dataset = Dataset(spec, class_names, out_images, out_labels, checksums, manifest)
    manifest["counts"] = dataset.counts()
    return dataset


def load_eval_folder(
    root: str | Path, spec: InputSpec, class_names: tuple[str, ...], *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every picture of another folder (all its parts), labelled with the model's class ids.

    For held-out pictures from other sources: each category folder must name one of the model's
    categories (exactly, or Fashion-MNIST's in any spelling when the model has those).
    """
    from product_classifier.data.folder import FolderDataError, load_folder
    from product_classifier.data.folder_import import category_of

    folder = load_folder(root, spec, min_images_per_class=1, progress=progress)
    ids: dict[str, int] = {}
    knows_fashion_mnist = tuple(class_names[:10]) == CLASS_NAMES
    for category in folder.categories:
        known = category_of(category) if knows_fashion_mnist else None
        if category in class_names:
            ids[category] = class_names.index(category)
        elif known is not None:
            ids[category] = known
        else:
            raise FolderDataError(
                f"{root}: folder {category!r} is none of the model's categories {list(class_names)}"
            )
    labels = np.asarray([ids[p.category] for p in folder.pictures], dtype=np.int64)
    return folder.images, labels, folder.report()

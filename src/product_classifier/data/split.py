"""Seeded, stratified index selection: the validation split and smaller training subsets.

:func:`fashion_mnist_split` is the one place a held-out choice gets its validation images from.

Stratified so that every class keeps its share (a 10 % validation split of Fashion-MNIST's train
set holds exactly 600 of each class), and deterministic: the same labels, fraction and seed give
the same indices on any machine, since numpy's PCG64 stream is stable across platforms.
Indices come back sorted, so they do not depend on the order classes were drawn in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _as_labels(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    return arr


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across classes in proportion to ``counts`` (largest remainder method).

    Rounding each class on its own can drift from ``total`` (ten classes of 5 at 10 % round to
    zero each); distributing the remainder to the largest fractional parts keeps the sum exact.
    """
    exact = counts * (total / counts.sum())
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: total - int(take.sum())]] += 1
    return take


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions into ``labels`` of a stratified random ``fraction`` of it."""
    arr = _as_labels(labels)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    total = int(np.floor(len(arr) * fraction + 0.5))  # round half up, not to even
    if total == 0:
        return np.empty(0, dtype=np.int64)
    classes, inverse = np.unique(arr, return_inverse=True)
    take = _apportion(np.bincount(inverse, minlength=len(classes)), total)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(inverse == c))[: take[c]] for c in range(len(classes))]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): disjoint, sorted, covering every index, stratified by class."""
    arr = _as_labels(labels)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val_idx = stratified_subset(arr, val_fraction, seed)
    in_val = np.zeros(len(arr), dtype=bool)
    in_val[val_idx] = True
    return np.flatnonzero(~in_val).astype(np.int64), val_idx


@dataclass(frozen=True)
class FashionMnistSplit:
    """Fashion-MNIST's 60k training images and a run's split of them into train/validation."""

    images: np.ndarray  # uint8 [60000, 28, 28]
    labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray

    @property
    def val_images(self) -> np.ndarray:
        return self.images[self.val_idx]

    @property
    def val_labels(self) -> np.ndarray:
        return self.labels[self.val_idx]


def fashion_mnist_split(
    data: Mapping[str, Any] | None = None, data_dir: str | Path | None = None
) -> FashionMnistSplit:
    """The validation split every held-out choice is made on (cascade threshold, review policy,
    WiSE-FT mix, preprocessing constants, TTA, INT8 settings).

    ``data`` is a run's ``data`` config as a checkpoint or a model card stores it; its
    ``val_fraction`` and ``split_seed`` (DataConfig's defaults when absent) select the same
    images training held out, so none of them was trained on.
    """
    from product_classifier.config import DataConfig
    from product_classifier.data.fashion_mnist import load_fashion_mnist

    data = data or {}
    defaults = DataConfig()
    val_fraction = float(data.get("val_fraction", defaults.val_fraction))
    split_seed = int(data.get("split_seed", defaults.split_seed))
    images, labels = load_fashion_mnist("train", data_dir=data_dir)
    train_idx, val_idx = stratified_split(labels, val_fraction, split_seed)
    return FashionMnistSplit(images, labels, train_idx, val_idx)

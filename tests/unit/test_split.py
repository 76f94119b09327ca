"""Stratified, seeded, deterministic index selection."""

from __future__ import annotations

import numpy as np
import pytest

from product_classifier.data.split import stratified_split, stratified_subset


@pytest.fixture()
def labels() -> np.ndarray:
    # Imbalanced on purpose: 500, 300, 150, 50 samples, shuffled.
    raw = np.repeat(np.arange(4), [500, 300, 150, 50])
    return np.random.default_rng(1).permutation(raw)


def test_split_is_a_stratified_partition(labels: np.ndarray) -> None:
    train, val = stratified_split(labels, 0.2, seed=7)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.bincount(labels[val]).tolist() == [100, 60, 30, 10]
    assert np.bincount(labels[train]).tolist() == [400, 240, 120, 40]
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert train.dtype == val.dtype == np.int64


def test_split_is_deterministic_and_depends_on_the_seed(labels: np.ndarray) -> None:
    first = stratified_split(labels, 0.1, seed=3)
    again = stratified_split(labels.copy(), 0.1, seed=3)
    other = stratified_split(labels, 0.1, seed=4)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_pinned_indices_do_not_drift() -> None:
    # A change of algorithm would silently change every experiment's validation set.
    labels = np.arange(20) % 2
    _, val = stratified_split(labels, 0.2, seed=0)
    assert val.tolist() == [5, 8, 12, 19]  # two of each class


def test_rounding_keeps_the_total_exact() -> None:
    labels = np.repeat(np.arange(10), 5)  # 10 % of 5 per class rounds to 0 everywhere
    _, val = stratified_split(labels, 0.1, seed=0)
    assert len(val) == 5
    assert np.bincount(labels[val], minlength=10).max() == 1


def test_zero_fraction_gives_an_empty_validation_set(labels: np.ndarray) -> None:
    train, val = stratified_split(labels, 0.0, seed=0)
    assert len(val) == 0 and len(train) == len(labels)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_invalid_val_fraction_is_rejected(labels: np.ndarray, fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, fraction, seed=0)


def test_subset_is_stratified_and_nested_in_its_input(labels: np.ndarray) -> None:
    keep = stratified_subset(labels, 0.5, seed=0)
    assert np.bincount(labels[keep]).tolist() == [250, 150, 75, 25]
    assert len(np.unique(keep)) == len(keep)
    np.testing.assert_array_equal(stratified_subset(labels, 1.0, seed=9), np.arange(len(labels)))
    np.testing.assert_array_equal(keep, stratified_subset(labels, 0.5, seed=0))


def test_non_1d_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="1-D"):
        stratified_subset(np.zeros((2, 2), dtype=np.int64), 0.5, seed=0)

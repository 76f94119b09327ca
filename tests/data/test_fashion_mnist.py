"""The real Fashion-MNIST, found by the project's locator, through the data stage's API."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from product_classifier.constants import IMAGE_SIZE, NUM_CLASSES
from product_classifier.data.fashion_mnist import (
    FILES,
    dataset_checksums,
    load_fashion_mnist,
    locate_dataset,
)
from product_classifier.data.split import stratified_split, stratified_subset

SIZES = {"train": 60_000, "test": 10_000}


@pytest.fixture(scope="module", params=["train", "test"])
def split_data(request: pytest.FixtureRequest, fashion_mnist) -> tuple[str, np.ndarray, np.ndarray]:
    images, labels = load_fashion_mnist(request.param, data_dir=fashion_mnist.directory)
    return request.param, images, labels


def test_shapes_and_dtypes(split_data: tuple[str, np.ndarray, np.ndarray]) -> None:
    split, images, labels = split_data
    assert images.shape == (SIZES[split], IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == np.uint8 and images.flags.c_contiguous
    assert labels.shape == (SIZES[split],) and labels.dtype == np.int64


def test_labels_are_balanced(split_data: tuple[str, np.ndarray, np.ndarray]) -> None:
    split, _, labels = split_data
    per_class = SIZES[split] // NUM_CLASSES
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [per_class] * NUM_CLASSES


def test_pixels_use_the_full_range_bright_item_on_dark(
    split_data: tuple[str, np.ndarray, np.ndarray],
) -> None:
    _, images, _ = split_data
    assert images.min() == 0 and images.max() == 255
    # The published mean intensity is 0.286 (train) / 0.287 (test); a wrong header offset or
    # byte order would be far off.
    assert images.mean() / 255 == pytest.approx(0.286, abs=0.002)
    # Dark background, as the ONNX contract expects (tall items do touch the top and bottom).
    border = np.concatenate(
        [images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1]], axis=1
    )
    assert np.median(border) == 0
    assert (border < 30).mean() > 0.8


def test_no_duplicate_images_within_a_split(
    split_data: tuple[str, np.ndarray, np.ndarray],
) -> None:
    _, images, _ = split_data
    digests = {hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images}
    assert len(digests) == len(images)


def test_validation_split_is_stratified_without_duplicates(fashion_mnist) -> None:
    _, labels = load_fashion_mnist("train", data_dir=fashion_mnist.directory)
    train_idx, val_idx = stratified_split(labels, 0.1, seed=42)
    assert len(np.unique(val_idx)) == len(val_idx) == 6000
    assert len(np.unique(train_idx)) == len(train_idx) == 54_000
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    assert np.bincount(labels[val_idx]).tolist() == [600] * NUM_CLASSES
    small = train_idx[stratified_subset(labels[train_idx], 0.05, seed=42)]
    assert np.bincount(labels[small]).tolist() == [270] * NUM_CLASSES


def test_checksums_match_an_independent_hash(fashion_mnist) -> None:
    real = fashion_mnist.directory
    assert locate_dataset(real) == real
    checksums = dataset_checksums(real)
    assert list(checksums) == [spec.name for spec in FILES]
    for spec in FILES:
        payload = fashion_mnist.payload(spec)
        assert checksums[spec.name] == hashlib.sha256(payload).hexdigest() == spec.payload_sha256

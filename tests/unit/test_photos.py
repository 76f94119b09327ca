"""evaluation/photos.py: rendering shop photos from 28x28 items, and scoring them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from product_classifier.evaluation import photos as ph
from product_classifier.preprocessing import canonicalize, decode_image, to_grayscale


def fake_dataset(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-like items: smooth bright shapes with stripes, filling the frame's height."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    rows = np.arange(28)[:, None]
    for i in range(n):
        w = int(rng.integers(10, 29))
        left = (28 - w + 1) // 2
        shade = 120 + 100 * np.sin(rows / 28 * np.pi * rng.uniform(0.5, 2.0)) ** 2
        block = np.repeat(shade, w, axis=1)
        block[:, :: int(rng.integers(4, 8))] *= 0.5  # a few darker seams
        images[i, :, left : left + w] = np.clip(block, 0, 255).astype(np.uint8)
        images[i, 0, left : left + w] = 255
    return images, np.arange(n) % 10


def test_same_seed_same_bytes_and_subset_independent_of_n() -> None:
    images, labels = fake_dataset()
    a = ph.build_photo_set(images, labels, n=10, seed=3)
    b = ph.build_photo_set(images, labels, n=10, seed=3)
    assert [p.data for p in a] == [p.data for p in b]
    c = ph.build_photo_set(images, labels, n=10, seed=4)
    assert [p.data for p in a] != [p.data for p in c]
    # Nested subsets, and a photo depends on (seed, index) only, not on n.
    by_index = {p.index: p.data for p in ph.build_photo_set(images, labels, n=30, seed=3)}
    assert all(by_index[p.index] == p.data for p in a)


def test_photos_look_like_shop_photos() -> None:
    images, labels = fake_dataset()
    photos = ph.build_photo_set(images, labels, n=30, seed=0)
    assert {p.format for p in photos} == set(ph.FORMATS)
    for photo in photos:
        image = Image.open(io.BytesIO(photo.data))
        assert image.format == photo.format
        width, height = image.size
        assert (width, height) == photo.size
        assert width != height  # never square
        assert abs(photo.rotation_deg) <= 5.0
        gray = np.asarray(image.convert("L"))
        # Light page all around: the item is placed with margins on every side.
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        assert np.median(border) > 235
        # The item is dark, large (200-500 px) and not simply centred.
        rows = np.flatnonzero((gray < 200).any(axis=1))
        cols = np.flatnonzero((gray < 200).any(axis=0))
        assert 200 * 0.9 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 500 * 1.1
        assert rows[0] > 0 and cols[0] > 0 and rows[-1] < height - 1 and cols[-1] < width - 1
        assert photo.filename.endswith(
            {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[photo.format]
        )


@pytest.mark.parametrize(("rotation", "min_mean"), [(0.0, 0.9), (5.0, 0.75)])
def test_preprocessing_recovers_the_item_from_its_photo(rotation: float, min_mean: float) -> None:
    images, labels = fake_dataset()
    style = ph.PhotoStyle(max_rotation_deg=rotation)
    correlations = []
    for photo in ph.build_photo_set(images, labels, n=40, seed=1, style=style):
        canon = canonicalize(to_grayscale(decode_image(photo.data)))
        assert canon.max() >= 230  # the tinted, darker-than-white item is stretched back
        original = images[photo.index].astype(float)
        correlations.append(np.corrcoef(canon.ravel().astype(float), original.ravel())[0, 1])
    # Sharp one-pixel seams blur a little; a wrong crop, scale or inversion would be near 0.
    assert np.mean(correlations) > min_mean
    assert min(correlations) > min_mean - 0.45


def test_render_rejects_anything_but_a_28x28_uint8_item() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        ph.render_photo(np.zeros((28, 27), np.uint8), rng)
    with pytest.raises(ValueError):
        ph.render_photo(np.zeros((28, 28), np.float32), rng)


def test_subset_bounds() -> None:
    labels = np.zeros(50, np.int64)
    assert len(set(ph.photo_subset(labels, 50, 0))) == 50
    with pytest.raises(ValueError):
        ph.photo_subset(labels, 51, 0)
    with pytest.raises(ValueError):
        ph.photo_subset(labels, 0, 0)


def test_score_photos_counts_refusals_as_wrong() -> None:
    images, labels = fake_dataset(10)
    photos = ph.build_photo_set(images, labels, n=4, seed=0)
    truth = [p.label for p in photos]
    raw = np.array(truth)
    result = ph.score_photos(photos, [truth[0], truth[1], None, (truth[3] + 1) % 10], raw)
    assert result.n == 4 and result.refused == 1
    assert result.raw_accuracy == 1.0 and result.photo_accuracy == 0.5
    assert result.gap_pp == pytest.approx(50.0)
    assert "gap +50.00 pp" in result.summary()


def test_save_photos(tmp_path) -> None:  # type: ignore[no-untyped-def]
    images, labels = fake_dataset(10)
    photos = ph.build_photo_set(images, labels, n=3, seed=0)
    paths = ph.save_photos(photos, tmp_path / "out")
    assert [p.read_bytes() for p in paths] == [p.data for p in photos]
    assert all("/" not in p.name.replace(" ", "") for p in paths)


def test_validation_renders_say_so_and_only_two_splits_exist() -> None:
    """Renders of validation images (what preprocessing is tuned on) are named apart from the
    test renders (what a release reports), and no third split is accepted."""
    images, labels = fake_dataset(10)
    val = ph.build_photo_set(images, labels, n=3, seed=0, split="val")
    test = ph.build_photo_set(images, labels, n=3, seed=0)
    assert all(p.filename.startswith("val") for p in val)
    assert all(p.filename.startswith("test") for p in test)
    with pytest.raises(ValueError, match="split"):
        ph.split_images("train", "artifacts/model.onnx")  # type: ignore[arg-type]

"""IDX parsing: good files in every form, and every way a file can be broken."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from product_classifier.data.errors import DatasetError
from product_classifier.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    CorruptFileError,
    gunzip,
    parse_idx,
    read_idx,
)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


@pytest.fixture()
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.fixture()
def labels() -> np.ndarray:
    return np.array([0, 9, 3, 3, 1], dtype=np.uint8)


def test_magic_constants_match_the_format() -> None:
    assert IMAGES_MAGIC == 0x0803 == 2051
    assert LABELS_MAGIC == 0x0801 == 2049


@pytest.mark.parametrize("compress", [False, True])
def test_reads_images_and_labels_from_files(
    tmp_path: Path, images: np.ndarray, labels: np.ndarray, compress: bool
) -> None:
    pack = gzip.compress if compress else (lambda b: b)
    (tmp_path / "img").write_bytes(pack(idx_bytes(images)))
    (tmp_path / "lab").write_bytes(pack(idx_bytes(labels)))

    got_images = read_idx(tmp_path / "img", "images", expected_count=5)
    got_labels = read_idx(str(tmp_path / "lab"), "labels")

    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    assert got_images.flags.writeable  # training code hands it to torch.from_numpy


def test_reads_from_bytes_and_multi_member_gzip(labels: np.ndarray) -> None:
    raw = idx_bytes(labels)
    # Concatenated gzip members are one valid gzip stream (as `cat a.gz b.gz` makes).
    two_members = gzip.compress(raw[:7]) + gzip.compress(raw[7:]) + b"\0" * 8
    np.testing.assert_array_equal(read_idx(two_members, "labels"), labels)
    np.testing.assert_array_equal(read_idx(raw, "labels"), labels)


def test_bad_magic_is_rejected_with_the_file_name(tmp_path: Path, labels: np.ndarray) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"PK\x03\x04" + idx_bytes(labels)[4:])
    with pytest.raises(DatasetError) as info:
        read_idx(path, "labels")
    message = str(info.value)
    assert str(path) in message
    assert "not an IDX file" in message
    assert "delete it" in message and "product-classifier data fetch" in message


def test_labels_file_given_as_images_is_rejected(labels: np.ndarray) -> None:
    with pytest.raises(CorruptFileError, match=r"expected images.*magic number is 2049"):
        read_idx(idx_bytes(labels), "images", name="x")


def test_non_byte_dtype_is_rejected(labels: np.ndarray) -> None:
    data = idx_bytes(labels, magic=0x0D01)  # 0x0D = float32
    with pytest.raises(CorruptFileError, match="data type is 0x0d"):
        parse_idx(data, "labels")


def test_wrong_image_dimensions_are_rejected() -> None:
    data = idx_bytes(np.zeros((2, 28, 27), dtype=np.uint8))
    with pytest.raises(CorruptFileError, match="28x27, expected 28x28"):
        parse_idx(data, "images")


def test_unexpected_count_is_rejected(labels: np.ndarray) -> None:
    with pytest.raises(CorruptFileError, match="holds 5 labels, expected 60000"):
        parse_idx(idx_bytes(labels), "labels", expected_count=60000)


def test_truncated_payload_is_rejected(images: np.ndarray) -> None:
    data = idx_bytes(images)[:-100]
    with pytest.raises(CorruptFileError, match="truncated: the header promises 3920 bytes"):
        parse_idx(data, "images", name="t10k-images-idx3-ubyte")


@pytest.mark.parametrize("cut", [0, 3, 10])
def test_truncated_header_is_rejected(images: np.ndarray, cut: int) -> None:
    with pytest.raises(CorruptFileError):
        parse_idx(idx_bytes(images)[:cut], "images")


def test_trailing_bytes_are_rejected(labels: np.ndarray) -> None:
    with pytest.raises(CorruptFileError, match="3 unexpected bytes"):
        parse_idx(idx_bytes(labels) + b"abc", "labels")


def test_truncated_gzip_is_rejected(tmp_path: Path, images: np.ndarray) -> None:
    compressed = gzip.compress(idx_bytes(images))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError, match="gzip stream is truncated") as info:
        read_idx(path, "images")
    assert str(path) in str(info.value)


def test_damaged_gzip_is_rejected(images: np.ndarray) -> None:
    compressed = bytearray(gzip.compress(idx_bytes(images)))
    compressed[-6] ^= 0xFF  # inside the CRC-32 trailer
    with pytest.raises(CorruptFileError, match="damaged"):
        read_idx(bytes(compressed), "images")


def test_garbage_after_gzip_is_rejected(labels: np.ndarray) -> None:
    with pytest.raises(CorruptFileError, match="garbage follow"):
        gunzip(gzip.compress(idx_bytes(labels)) + b"junk", "x")


def test_decompression_is_capped(labels: np.ndarray) -> None:
    bomb = gzip.compress(b"\0" * 10_000)
    with pytest.raises(CorruptFileError, match="more than 1000 bytes"):
        gunzip(bomb, "bomb.gz", max_bytes=1000)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot be read") as info:
        read_idx(tmp_path / "nope.gz", "labels")
    assert "nope.gz" in str(info.value)

"""Request bodies for the load tests, built from real Fashion-MNIST test images.

Two kinds of upload: the 28x28 test image as a PNG (what a client that already has
Fashion-MNIST-like crops sends) and a catalog-sized photo: the item upscaled, inverted to dark
on white and placed on a larger white canvas, as a ~600x600 RGB JPEG. Bodies are encoded once
as complete ``multipart/form-data`` payloads so that the load generator spends its CPU on
sending them, not on encoding them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

BOUNDARY = "----product-classifier-loadtest-7d3f1b"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CATALOG_SIZE = 600
# The item covers ~70% of the canvas, like a packshot with a white margin.
CATALOG_ITEM_FRACTION = 0.7


@dataclass(frozen=True)
class Part:
    field: str
    filename: str
    content_type: str
    data: bytes


def multipart_body(parts: list[Part]) -> bytes:
    """Encode parts as one multipart/form-data body with :data:`BOUNDARY`."""
    out = bytearray()
    for part in parts:
        out += (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{part.field}"; filename="{part.filename}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n"
        ).encode()
        out += part.data
        out += b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def sample_test_images(count: int, seed: int = 0, data_dir: str | Path | None = None) -> np.ndarray:
    """``count`` distinct images (uint8 [count, 28, 28]) drawn from the 10k test split."""
    from product_classifier.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist("test", data_dir)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), size=min(count, len(images)), replace=False)
    return images[idx]


def png_28(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def catalog_jpeg(pixels: np.ndarray, size: int = CATALOG_SIZE, quality: int = 90) -> bytes:
    """28x28 bright-on-dark -> size x size RGB JPEG, dark item on a white page."""
    item = int(size * CATALOG_ITEM_FRACTION)
    big = Image.fromarray(255 - pixels).resize((item, item), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size, size), 255)
    offset = (size - item) // 2
    canvas.paste(big, (offset, offset))
    buf = io.BytesIO()
    canvas.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class PayloadPool:
    """Ready-to-send bodies; every entry is a complete multipart body."""

    png: list[bytes]  # one 28x28 PNG each, field "file"
    jpeg: list[bytes]  # one catalog JPEG each, field "file"
    batch: list[bytes]  # ``batch_files`` PNGs each, field "files"
    batch_files: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE


def build_pool(
    *,
    png_count: int = 256,
    jpeg_count: int = 32,
    batch_count: int = 8,
    batch_files: int = 64,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> PayloadPool:
    images = sample_test_images(max(png_count, jpeg_count, batch_files), seed, data_dir)
    pngs = [png_28(img) for img in images]
    png_bodies = [
        multipart_body([Part("file", f"{i}.png", "image/png", pngs[i])]) for i in range(png_count)
    ]
    jpeg_bodies = [
        multipart_body([Part("file", f"{i}.jpg", "image/jpeg", catalog_jpeg(images[i]))])
        for i in range(jpeg_count)
    ]
    batch_bodies = []
    for b in range(batch_count):
        picks = [(b * batch_files + k) % len(pngs) for k in range(batch_files)]
        batch_bodies.append(
            multipart_body([Part("files", f"{i}.png", "image/png", pngs[i]) for i in picks])
        )
    return PayloadPool(png_bodies, jpeg_bodies, batch_bodies, batch_files)

"""The one place where pixels become model input, shared by training, evaluation and serving.

Training reads Fashion-MNIST's raw bytes and calls :func:`to_model_input`. Serving decodes an
upload with :func:`decode_image`, turns it into a canonical 28x28 uint8 image with
:func:`canonicalize` (the same steps the Fashion-MNIST paper used to make the dataset) and then
calls the same :func:`to_model_input`. Only numpy and Pillow are needed: the service has no torch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from product_classifier.constants import IMAGE_SIZE

# Pillow's own bomb guard warns at ~89 MP and raises at twice that; our limit is stricter and
# is checked from the header before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000


class PreprocessingError(ValueError):
    """The bytes are not a usable image. ``code`` is a stable, machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PreprocessConfig:
    max_pixels: int = DEFAULT_MAX_PIXELS
    # A border pixel differing from the background by more than this belongs to the item.
    foreground_threshold: int = 24
    # Margin kept around the item's bounding box, as a fraction of its longer side.
    crop_margin: float = 0.0


def to_model_input(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [..., 28, 28] (bright item on dark) -> float32 [N, 1, 28, 28] in [0, 1].

    This is the ONNX contract: raw bytes / 255, no mean/std (normalisation lives in the graph).
    """
    arr = np.asarray(images_uint8)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {arr.dtype}")
    arr = arr.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return arr.astype(np.float32) / np.float32(255.0)


def decode_image(data: bytes, config: PreprocessConfig | None = None) -> Image.Image:
    """Decode bytes into a Pillow image with EXIF orientation applied.

    Raises PreprocessingError (never anything else) for empty, undecodable, truncated or
    oversized images. Animated images give their first frame.
    """
    config = config or PreprocessConfig()
    if not data:
        raise PreprocessingError("empty_file", "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width <= 0 or height <= 0:
                raise PreprocessingError("invalid_image", "the image has no pixels")
            if width * height > config.max_pixels:
                raise PreprocessingError(
                    "image_too_large",
                    f"the image is {width}x{height} = {width * height} pixels; "
                    f"the limit is {config.max_pixels}",
                )
            image.seek(0)
            image.load()  # forces a full decode so truncated files fail here
            image = ImageOps.exif_transpose(image) or image
    except PreprocessingError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PreprocessingError("image_too_large", f"decompression bomb refused: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise PreprocessingError("not_an_image", "the file is not a recognised image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated/corrupt data as OSError or SyntaxError depending on codec.
        raise PreprocessingError("corrupt_image", f"the image could not be decoded: {exc}") from exc
    return image


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Any mode -> uint8 HxW luminance; transparency is composited onto white.

    White, because shops cut products out onto white pages; the inversion step then turns that
    background dark like Fashion-MNIST's.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() if arr.size and arr.max() > 255 else 255.0
        return np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return ((arr - lo) * scale).astype(np.uint8)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _border_background(gray: np.ndarray) -> float:
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    return float(np.median(border))


def canonicalize(gray: np.ndarray, config: PreprocessConfig | None = None) -> np.ndarray:
    """HxW uint8 grayscale -> 28x28 uint8, bright item on dark, centred, aspect kept.

    A 28x28 image that already has a dark background is taken to be in Fashion-MNIST form
    and passed through untouched, so a dataset image sent over HTTP scores exactly as offline.
    """
    config = config or PreprocessConfig()
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    background = _border_background(gray)
    if background > 127:
        # Dark item on a light page (a catalog photo): flip to Fashion-MNIST's orientation.
        gray = 255 - gray
        background = 255 - background
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(gray, dtype=np.uint8)

    # Subtract the background level so that a grey page becomes black, then crop to the item.
    work = np.clip(gray.astype(np.int16) - int(round(background)), 0, 255).astype(np.uint8)
    mask = work > config.foreground_threshold
    if mask.any():
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        if config.crop_margin > 0:
            pad = int(round(config.crop_margin * max(bottom - top, right - left)))
            top, left = max(0, top - pad), max(0, left - pad)
            bottom, right = min(work.shape[0], bottom + pad), min(work.shape[1], right + pad)
        work = work[top:bottom, left:right]

    height, width = work.shape
    scale = IMAGE_SIZE / max(height, width)
    new_w = max(1, min(IMAGE_SIZE, int(round(width * scale))))
    new_h = max(1, min(IMAGE_SIZE, int(round(height * scale))))
    resized = Image.fromarray(work).resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    top = (IMAGE_SIZE - new_h) // 2
    left = (IMAGE_SIZE - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.uint8)
    return canvas


def preprocess_image(image: Image.Image, config: PreprocessConfig | None = None) -> np.ndarray:
    """Decoded image -> canonical 28x28 uint8."""
    return canonicalize(to_grayscale(image), config)


def preprocess_bytes(data: bytes, config: PreprocessConfig | None = None) -> np.ndarray:
    """Uploaded bytes -> float32 [1, 1, 28, 28], ready for the ONNX model."""
    return to_model_input(preprocess_image(decode_image(data, config), config))

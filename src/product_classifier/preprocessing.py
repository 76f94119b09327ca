"""The one place where pixels become model input, shared by training, evaluation and serving.

What a model expects is its :class:`InputSpec` (size, channels, canonicalisation), recorded in
the config, the checkpoint and the ONNX metadata (``input_spec``); a model file without one is
a Fashion-MNIST model (:data:`FASHION_MNIST_SPEC`), so the released files keep their contract.

- ``fashion-mnist``: 28x28 grayscale, bright item on dark. Training reads Fashion-MNIST's raw
  bytes and calls :func:`to_model_input`. Serving decodes an upload with :func:`decode_image`,
  turns it into a canonical 28x28 uint8 image with :func:`canonicalize` (the same steps the
  Fashion-MNIST paper used to make the dataset) and then calls the same :func:`to_model_input`.
- ``letterbox``: colour (or grey) catalog photos. :func:`letterbox` trims the empty page
  around the item, fits its longer side into ``size`` and centres it on a white square.

Training, evaluation, the service and the bulk CLI all go through :func:`preprocess_image` /
:func:`to_model_input` with the model's spec. Only numpy and Pillow are needed: the service has
no torch.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from product_classifier.constants import IMAGE_SIZE

# The largest width x height accepted, checked from the header before any pixel is decoded
# (Pillow's own bomb guard warns at ~89 MP and raises at twice that). 4096x4096: a phone's
# 12 MP photo (4032x3024) and a 16 MP one pass; a catalog photo is usually far smaller (shop
# platforms recommend ~2048 px); a 24 MP DSLR original (6000x4000) must be downsized first,
# which costs the answer nothing (the model sees 28x28). The memory one upload can take at
# this limit is measured by scripts/peak_memory.py (docs/security.md).
DEFAULT_MAX_PIXELS = 4096 * 4096

# A photo is decoded at reduced size (JPEG: scaled in the DCT by 1/2, 1/4 or 1/8 with
# Image.draft; other formats: area-averaged right after decoding) as long as its shorter side
# stays >= this many times the model's input size: 12 x 28 = 336 px, so the item stays well
# above the 112 px canonicalize measures it at. Chosen on 2000 validation renders and the
# real-picture dev part (scripts/decode_reduced_check.py, docs/evidence/decode-reduced.json):
# the smallest factor tried (4, 8, 12, 16) whose accuracy on both is within 0.2 pp of the
# full decode; a 600x600 JPEG then decodes straight to grey at full size (1.6x faster).
REDUCED_DECODE_FACTOR = 12


class PreprocessingError(ValueError):
    """The bytes are not a usable image. ``code`` is a stable, machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PreprocessConfig:
    max_pixels: int = DEFAULT_MAX_PIXELS
    # A pixel belongs to the item when it is brighter than the background by more than
    # max(foreground_threshold, foreground_fraction x the brightest pixel's excess). Relative,
    # so the box edge sits at the same place on the item's blurred outline whatever its
    # contrast (validation renders: 0.05-0.2 score alike, 0.25 and up lose ~0.5 pp).
    foreground_threshold: int = 12
    foreground_fraction: float = 0.15
    # Margin kept around the item's bounding box, as a fraction of its longer side.
    crop_margin: float = 0.0


Canonicalization = Literal["fashion-mnist", "letterbox"]
CANONICALIZATIONS: tuple[str, ...] = ("fashion-mnist", "letterbox")
# Letterbox sizes: below 16 px nothing is recognisable; above 512 a CPU service is too slow.
MIN_SIZE, MAX_SIZE = 16, 512
INPUT_SPEC_KEY = "input_spec"  # ONNX metadata key


class InputSpecError(ValueError):
    """An input spec that no model can have (the message says which field and why)."""


@dataclass(frozen=True)
class InputSpec:
    """What a model's ``image`` input holds: float32 [N, channels, size, size] in [0, 1].

    ``fashion-mnist`` is today's 28x28 grayscale contract, bright item on dark; ``letterbox``
    is a photo fitted onto a white page, any ``size`` in [16, 512], 1 (grey) or 3 (RGB)
    channels, dark item on light (the photo's own colours).
    """

    size: int = IMAGE_SIZE
    channels: int = 1
    canonicalization: Canonicalization = "fashion-mnist"

    def __post_init__(self) -> None:
        if self.canonicalization not in CANONICALIZATIONS:
            raise InputSpecError(
                f"canonicalization {self.canonicalization!r} is not one of {CANONICALIZATIONS}"
            )
        if self.canonicalization == "fashion-mnist" and (self.size, self.channels) != (
            IMAGE_SIZE,
            1,
        ):
            raise InputSpecError(
                f"canonicalization 'fashion-mnist' means {IMAGE_SIZE}x{IMAGE_SIZE} grayscale; "
                f"got size {self.size}, channels {self.channels} (use 'letterbox' for other "
                "sizes or colour)"
            )
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise InputSpecError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}]")
        if self.channels not in (1, 3):
            raise InputSpecError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """One image as the model sees it: (channels, size, size)."""
        return (self.channels, self.size, self.size)

    @property
    def canonical_shape(self) -> tuple[int, ...]:
        """One canonical uint8 image, before :func:`to_model_input`: HxW or HxWx3."""
        if self.channels == 1:
            return (self.size, self.size)
        return (self.size, self.size, self.channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InputSpec:
        unknown = set(raw) - {"size", "channels", "canonicalization"}
        if unknown:
            raise InputSpecError(f"unknown input spec keys: {sorted(unknown)}")
        return cls(**dict(raw))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> InputSpec:
        """The spec in an ONNX file's metadata; none means a Fashion-MNIST model."""
        raw = metadata.get(INPUT_SPEC_KEY)
        if raw is None:
            return FASHION_MNIST_SPEC
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputSpecError(f"metadata {INPUT_SPEC_KEY!r} is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise InputSpecError(f"metadata {INPUT_SPEC_KEY!r} must be a JSON object")
        return cls.from_dict(parsed)


FASHION_MNIST_SPEC = InputSpec()


def to_model_input(images_uint8: np.ndarray, spec: InputSpec = FASHION_MNIST_SPEC) -> np.ndarray:
    """Canonical uint8 images -> float32 [N, C, S, S] in [0, 1].

    Grey: [..., S, S]; colour: [..., S, S, 3] (channels last, as Pillow gives them). This is the
    ONNX contract: raw bytes / 255, no mean/std (normalisation lives in the graph).
    """
    arr = np.asarray(images_uint8)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {arr.dtype}")
    if spec.channels == 1:
        arr = arr.reshape(-1, 1, spec.size, spec.size)
    else:
        arr = arr.reshape(-1, spec.size, spec.size, spec.channels).transpose(0, 3, 1, 2)
    return arr.astype(np.float32) / np.float32(255.0)


# The file names that folder tools (catalog folders, the import, the bulk CLI) read as
# pictures: the formats decode_image accepts.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

# PNG, JPEG, GIF, TIFF (LE/BE); WebP is checked apart (RIFF....WEBP).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_SIGNATURES = (_PNG_SIGNATURE, b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*")


def _has_image_signature(data: bytes) -> bool:
    return data.startswith(_IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def decode_image(
    data: bytes, config: PreprocessConfig | None = None, spec: InputSpec | None = None
) -> Image.Image:
    """Decode bytes into a Pillow image with EXIF orientation applied.

    With ``spec`` (the model the image is for), a large photo is decoded at reduced size:
    a JPEG is scaled while it is decoded (``Image.draft``; to grey directly for a Fashion-MNIST
    model), anything else is area-averaged right after decoding (:func:`reduce_early`), so the
    later steps touch a fraction of the pixels. Without ``spec`` the full image is returned.

    Raises PreprocessingError (never anything else) for empty, undecodable, truncated or
    oversized images. Animated images give their first frame.
    """
    config = config or PreprocessConfig()
    if not data:
        raise PreprocessingError("empty_file", "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
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
            min_side = None if spec is None else spec.size * REDUCED_DECODE_FACTOR
            if min_side is not None and image.format == "JPEG":
                # "L": the JPEG's own luma, the same weights as convert("L") (ITU-R 601),
                # without decoding the colour; only for the grey Fashion-MNIST path.
                grey = spec is not None and spec.canonicalization == "fashion-mnist"
                image.draft("L" if grey else None, (min_side, min_side))
            image.load()  # forces a full decode so truncated files fail here
            # In place: without EXIF rotation the default returns a copy (measured ~3% of a
            # 28x28 request's CPU for nothing).
            ImageOps.exif_transpose(image, in_place=True)
            if min_side is not None:
                image = reduce_early(image, min_side)
    except PreprocessingError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Messages name the problem, not the decoder's words (they reach API clients).
        raise PreprocessingError(
            "image_too_large", "the image has too many pixels to decode safely"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        if _has_image_signature(data):
            # Pillow could not even identify it, but the signature says it is an image: a
            # truncated or damaged file is a bad request, not an unsupported type.
            raise PreprocessingError(
                "corrupt_image", "the image is truncated or damaged and cannot be read"
            ) from exc
        raise PreprocessingError("not_an_image", "the file is not a recognised image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated/corrupt data as OSError or SyntaxError depending on codec.
        raise PreprocessingError(
            "corrupt_image", "the image is truncated or damaged and cannot be decoded"
        ) from exc
    return image


_DATASET_IHDR = IMAGE_SIZE.to_bytes(4, "big") * 2  # a PNG's width and height, 28 and 28


def is_dataset_form(data: bytes) -> bool:
    """Whether ``canonicalize`` takes this upload as it is: a 28x28 image, Fashion-MNIST's own
    form. Everything else is a picture that canonicalize reshapes; the review policy treats the
    two apart (``inference/review.py``). Read from the header alone (a PNG's IHDR, in bytes;
    other formats: Pillow's lazy open); never raises (a broken file fails in decode_image).
    """
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR":
        return data[16:24] == _DATASET_IHDR
    if data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
        if size is not None:
            return size == (IMAGE_SIZE, IMAGE_SIZE)
    # Pillow's lazy open parses any format's header, at ~50 us a JPEG: too slow for the event
    # loop on the formats catalog pictures come in, fine for the rare rest.
    try:
        with Image.open(io.BytesIO(data)) as image:
            return bool(image.size == (IMAGE_SIZE, IMAGE_SIZE))
    except Exception:
        return False


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): they hold the
# image's size. 0xC4, 0xC8 and 0xCC are other segments with the same high bits.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, walking the segments before it;
    None if the bytes do not parse (Pillow then decides)."""
    i = 2
    end = len(data) - 9
    while i < end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(
                data[i + 5 : i + 7], "big"
            )
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


# Modes Image.reduce cannot take, and what they become first (alpha kept). Pillow reduces
# RGBA and LA premultiplied: a transparent black pixel does not darken its opaque neighbour,
# so compositing onto white afterwards equals reducing the composited image (tested).
_REDUCIBLE_AS = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I"}
# Pixels per band of reduce_early: the only full-size array is then the decoded image itself.
_BAND_PIXELS = 1 << 20


def reduce_early(image: Image.Image, min_side: int) -> Image.Image:
    """Area-average ``image`` by the largest whole factor that keeps its shorter side >=
    ``min_side`` (Pillow's reduce, in C); smaller images are returned as they are.

    Done right after decoding, before transparency, colour and float conversions, which would
    otherwise each allocate a full-size copy. It works in bands of rows (a multiple of the
    factor, so the result is the same as one reduce): the mode conversion some modes need and
    the premultiplied copy Pillow makes of RGBA never exist at full size. Measured at the
    pixel limit: a 4096x4096 RGBA PNG costs 64 MiB (its decoded pixels) instead of 128.
    """
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode == "P" and "transparency" not in image.info:
        mode = "RGB"
    else:
        mode = _REDUCIBLE_AS.get(image.mode, image.mode)
    width, height = image.size
    rows = factor * max(1, _BAND_PIXELS // (width * factor))
    try:
        out = Image.new(mode, (-(-width // factor), -(-height // factor)))
        for top in range(0, height, rows):
            band = image.crop((0, top, width, min(height, top + rows)))
            if band.mode != mode:
                band = band.convert(mode)
            out.paste(band.reduce(factor), (0, top // factor))
    except ValueError:  # an exotic mode reduce() refuses: the later steps take it full size
        return image
    return out


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
    image = _on_white(image)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _on_white(image: Image.Image) -> Image.Image:
    """Transparency composited onto a white page; an opaque image is returned as it is."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba)


def _border_background(gray: np.ndarray) -> float:
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    # np.median's result, without its dispatch overhead (a fifth of a 28x28 upload's
    # preprocessing time): the mean of the two middle values.
    border.sort()
    n = len(border)
    return (int(border[(n - 1) // 2]) + int(border[n // 2])) / 2.0


# How a large photo becomes 28x28. Area averaging (BOX) is the anti-aliasing; the item's
# peak is measured at 4x the final size, where JPEG noise is averaged away but a one-pixel
# highlight of the final image still shows; a light unsharp mask then undoes the softness of
# a photo downscaled 10x, like the sharpening step of the Fashion-MNIST conversion. These
# constants and PreprocessConfig's are chosen on shop-style renders of VALIDATION images,
# never test images (scripts/preprocessing_sweep.py, docs/evidence/held-out-2026-12-07/): on
# 2,000 renders no sharpening costs 1.0 pp, the peak of the final 28x28 (scale 1) 0.45 pp, and
# no value tried beats the ones below by more than noise.
_WORK_SCALE = 4
_SHARPEN_AMOUNT = 1.5
_SHARPEN_SIGMA = 0.5


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding (numpy only: the service has no scipy)."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    padded = np.pad(image, radius, mode="edge")
    height, width = image.shape
    rows = np.zeros((height, padded.shape[1]), dtype=np.float32)
    for i, tap in enumerate(taps):
        rows += tap * padded[i : i + height, :]
    out = np.zeros((height, width), dtype=np.float32)
    for i, tap in enumerate(taps):
        out += tap * rows[:, i : i + width]
    return out


def _sample_square(
    gray: np.ndarray, level: int, top: float, left: float, side: float
) -> tuple[np.ndarray, float]:
    """The square ``side`` x ``side`` at (top, left), background-subtracted, resampled to 28x28.

    Returns (float image, peak): the peak brightness of the item, measured at 4x resolution.
    Outside the photo counts as background. Never materialises the full square at the photo's
    resolution, so a 40000x1000 strip costs no more than its pixels.
    """
    height, width = gray.shape
    target = IMAGE_SIZE * _WORK_SCALE
    # Integer pre-reduction by area averaging (Pillow's reduce, in C) down to ~1-2x `target`.
    factor = max(1, int(side // target))
    y0, x0 = max(0, int(np.floor(top))), max(0, int(np.floor(left)))
    y1 = min(height, int(np.ceil(top + side)))
    x1 = min(width, int(np.ceil(left + side)))
    region = Image.fromarray(np.ascontiguousarray(gray)).reduce(factor, box=(x0, y0, x1, y1))
    work = np.asarray(region, dtype=np.float32) - np.float32(level)
    np.maximum(work, 0, out=work)
    # Coordinates in reduced pixels, relative to (y0, x0) where reduce() starts its blocks;
    # paste into a zero canvas that covers the whole square with a margin.
    unit_top, unit_left, unit_side = (top - y0) / factor, (left - x0) / factor, side / factor
    pad_y = int(np.ceil(max(0.0, -unit_top))) + 1
    pad_x = int(np.ceil(max(0.0, -unit_left))) + 1
    rows = max(pad_y + work.shape[0], int(np.ceil(pad_y + unit_top + unit_side))) + 1
    cols = max(pad_x + work.shape[1], int(np.ceil(pad_x + unit_left + unit_side))) + 1
    canvas = np.zeros((rows, cols), dtype=np.float32)
    canvas[pad_y : pad_y + work.shape[0], pad_x : pad_x + work.shape[1]] = work
    box = (
        pad_x + unit_left,
        pad_y + unit_top,
        pad_x + unit_left + unit_side,
        pad_y + unit_top + unit_side,
    )
    source = Image.fromarray(canvas, "F")
    if unit_side > target:
        mid = source.resize((target, target), Image.Resampling.BOX, box=box)
        peak = float(np.asarray(mid).max())
        small = mid.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    else:
        peak = float(work.max()) if work.size else 0.0
        resample = Image.Resampling.BOX if unit_side > IMAGE_SIZE else Image.Resampling.BICUBIC
        small = source.resize((IMAGE_SIZE, IMAGE_SIZE), resample, box=box)
    return np.asarray(small, dtype=np.float32), peak


# Outline drawings (icons drawn as strokes, a garment's contour on a white page) arrive as a
# bright contour around a dark inside, which no Fashion-MNIST image looks like: the model read
# them as bags. The background the item encloses is raised to a flat grey, so a contour becomes
# the filled silhouette the dataset has. Chosen on the real-picture DEV part and checked on
# 1,500 validation renders (scripts/outline_fill_sweep.py, docs/evidence/outline-fill.json):
# the best dev balanced accuracy of 9 settings whose render accuracy stays within 0.2 pp of no
# fill. A pixel at or below _HOLE_LEVEL x 255 counts as background.
_HOLE_LEVEL = 0.2
_HOLE_FILL = 0.55


def fill_enclosed(
    image: np.ndarray, level: float | None = None, fill: float | None = None
) -> np.ndarray:
    """uint8 HxW, bright item on dark -> a copy whose dark pixels that the item encloses (not
    reachable from the border through dark pixels, 4-connected) are raised to ``fill`` x 255.

    The service has no scipy, and growing the outside one pixel per numpy step cost ~180 us a
    picture (a few dozen steps of seven array calls each). Here the whole image is one Python
    integer, a bit per pixel plus a zero guard bit per row, so one step is five shifts and ORs
    over all pixels at once (~25 us; ``tests/unit/test_preprocessing.py`` checks it against
    scipy's ``binary_fill_holes``).
    """
    level = _HOLE_LEVEL if level is None else level
    fill = _HOLE_FILL if fill is None else fill
    dark = image <= np.uint8(round(level * 255))
    height, width = dark.shape
    stride = width + 1  # the guard column stops a horizontal shift from wrapping a row
    rows = np.zeros((height, stride), dtype=bool)
    rows[:, :width] = dark
    mask = _bits(rows)
    rows[1:-1, 1 : width - 1] = False  # the border's dark pixels seed the outside
    outside = _bits(rows)
    while True:
        grown = (
            outside | (outside << 1) | (outside >> 1) | (outside << stride) | (outside >> stride)
        ) & mask
        if grown == outside:
            break
        outside = grown
    holes = mask & ~outside
    if not holes:
        return image
    where = (
        np.unpackbits(
            np.frombuffer(holes.to_bytes(-(-height * stride // 8), "little"), dtype=np.uint8),
            count=height * stride,
            bitorder="little",
        )
        .reshape(height, stride)[:, :width]
        .astype(bool)
    )
    out = image.copy()
    out[where] = np.maximum(out[where], np.uint8(round(fill * 255)))
    return out


def _bits(flags: np.ndarray) -> int:
    """A boolean array as one integer, bit i = element i of the flattened array."""
    return int.from_bytes(np.packbits(flags.ravel(), bitorder="little").tobytes(), "little")


def bright_on_dark(gray: np.ndarray) -> tuple[np.ndarray, int]:
    """HxW grayscale -> (uint8 image with a bright item on a dark page, the page's level)."""
    gray = np.asarray(gray, dtype=np.uint8)
    background = _border_background(gray)
    if background > 127:
        # Dark item on a light page (a catalog photo): flip to Fashion-MNIST's orientation.
        gray = 255 - gray
        background = 255 - background
    return gray, round(background)


def item_mask(gray: np.ndarray, level: int, config: PreprocessConfig) -> np.ndarray:
    """The item in a :func:`bright_on_dark` image: pixels clearly brighter than the page at
    ``level`` (a grey page counts as black)."""
    excess = int(gray.max()) - level
    threshold = max(config.foreground_threshold, int(config.foreground_fraction * excess))
    return gray > min(255, level + threshold)


def canonicalize(gray: np.ndarray, config: PreprocessConfig | None = None) -> np.ndarray:
    """HxW uint8 grayscale -> 28x28 uint8, bright item on dark, centred, aspect kept.

    A 28x28 image that already has a dark background is taken to be in Fashion-MNIST form
    and passed through untouched, so a dataset image sent over HTTP scores exactly as offline.
    Anything else is made to look like a Fashion-MNIST image: background subtracted, cropped to
    the item, its longer side scaled to 28 px and centred (odd padding goes top/left, as in
    the dataset), sharpened, its contrast stretched so the item's brightest part is 255, and
    the background it encloses filled (:func:`fill_enclosed`: an outline becomes a silhouette).
    """
    config = config or PreprocessConfig()
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale image, got shape {gray.shape}")
    gray, level = bright_on_dark(gray)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(gray, dtype=np.uint8)

    mask = item_mask(gray, level, config)
    found = bool(mask.any())
    if found:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    else:
        top, bottom, left, right = 0, gray.shape[0], 0, gray.shape[1]
    height, width = int(bottom - top), int(right - left)
    side = max(height, width) * (1.0 + 2.0 * config.crop_margin)
    unit = side / IMAGE_SIZE  # photo pixels per output pixel
    centre_y, centre_x = (top + bottom) / 2.0, (left + right) / 2.0
    # Fashion-MNIST pads the shorter side to 28 with the odd pixel on the top/left.
    if (IMAGE_SIZE - round(height / unit)) % 2:
        centre_y -= unit / 2
    if (IMAGE_SIZE - round(width / unit)) % 2:
        centre_x -= unit / 2
    out, peak = _sample_square(gray, level, centre_y - side / 2, centre_x - side / 2, side)

    if side > IMAGE_SIZE:
        blurred = _gaussian_blur(out, _SHARPEN_SIGMA)
        out = out + np.float32(_SHARPEN_AMOUNT) * (out - blurred)
    if found and peak > 0:
        # Fashion-MNIST items all peak at 254-255: a navy coat on a grey page must too.
        out = out * np.float32(255.0 / peak)
    return fill_enclosed(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparency is composited onto white (the shop's page)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(to_grayscale(image)).convert("RGB")
    image = _on_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


# A pixel is part of the item when it differs from the page colour by more than this (0-255,
# summed over RGB): JPEG noise on a white page stays below it.
_TRIM_THRESHOLD = 48
# Margin kept around the trimmed item, as a fraction of its longer side.
_LETTERBOX_MARGIN = 0.04


def letterbox(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Decoded photo -> uint8 [S, S] or [S, S, 3]: item trimmed, fitted, centred on white.

    Trimming to the item (pixels unlike the border's median colour) makes the item's scale the
    same whatever the photo's margins; a photo without a plain border keeps its framing.
    """
    rgb = to_rgb(image)
    arr = np.asarray(rgb, dtype=np.int16)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    page = np.median(border, axis=0)
    mask = np.abs(arr - page).sum(axis=2) > _TRIM_THRESHOLD
    if mask.any():
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        pad = int(_LETTERBOX_MARGIN * max(bottom - top, right - left))
        box = (
            max(0, left - pad),
            max(0, top - pad),
            min(rgb.width, right + pad),
            min(rgb.height, bottom + pad),
        )
        rgb = rgb.crop(box)
    if spec.channels == 1:
        rgb = rgb.convert("L")
    fill: int | tuple[int, int, int] = 255 if spec.channels == 1 else (255, 255, 255)
    # A large photo is first shrunk by a whole factor (area averaging, fast, in C), then
    # resampled: the same result as one BICUBIC resize of the full photo, at a fraction of it.
    factor = max(rgb.size) // (2 * spec.size)
    if factor > 1:
        rgb = rgb.reduce(factor)
    fitted = ImageOps.pad(rgb, (spec.size, spec.size), Image.Resampling.BICUBIC, color=fill)
    return np.ascontiguousarray(np.asarray(fitted, dtype=np.uint8))


def from_fashion_mnist(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Fashion-MNIST's uint8 [N, 28, 28] (bright on dark) in ``spec``'s canonical form.

    For merging Fashion-MNIST with a catalog folder: a letterbox spec gets the item dark on a
    white page (inverted), resized to ``size``, grey repeated into RGB.
    """
    if spec.canonicalization == "fashion-mnist":
        return images
    out = np.empty((len(images), *spec.canonical_shape), dtype=np.uint8)
    for i, item in enumerate(images):
        page = Image.fromarray(255 - item)
        if spec.size != IMAGE_SIZE:
            page = page.resize((spec.size, spec.size), Image.Resampling.BICUBIC)
        out[i] = np.asarray(page if spec.channels == 1 else page.convert("RGB"))
    return out


def preprocess_image(
    image: Image.Image,
    config: PreprocessConfig | None = None,
    spec: InputSpec = FASHION_MNIST_SPEC,
) -> np.ndarray:
    """Decoded image -> canonical uint8 image of ``spec`` (28x28 for Fashion-MNIST models)."""
    if spec.canonicalization == "letterbox":
        return letterbox(image, spec)
    return canonicalize(to_grayscale(image), config)


def preprocess_bytes(
    data: bytes, config: PreprocessConfig | None = None, spec: InputSpec = FASHION_MNIST_SPEC
) -> np.ndarray:
    """Uploaded bytes -> float32 [1, C, S, S], ready for the ONNX model."""
    return to_model_input(preprocess_image(decode_image(data, config, spec), config, spec), spec)

"""Large photos decoded at reduced size (JPEG draft, early reduce) give the model the same input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from product_classifier.preprocessing import (
    DEFAULT_MAX_PIXELS,
    FASHION_MNIST_SPEC,
    InputSpec,
    PreprocessConfig,
    PreprocessingError,
    _gaussian_blur,
    decode_image,
    preprocess_bytes,
    preprocess_image,
    reduce_early,
    to_model_input,
)


def _garment(seed: int) -> np.ndarray:
    """A 28x28 bright-on-black item with some texture (a shirt-like body and sleeves)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((28, 28), np.float32)
    top, bottom = 3 + seed % 3, 24 + seed % 4
    arr[top:bottom, 7:21] = 180
    arr[top : top + 8, 2:26] = 150
    arr += rng.normal(0, 20, arr.shape) * (arr > 0)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _photo(item: np.ndarray, size: tuple[int, int], fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """The load test's catalog photo: the item dark on white, ~70% of the shorter side."""
    side = int(min(size) * 0.7)
    big = Image.fromarray(255 - item).resize((side, side), Image.Resampling.BICUBIC)
    page = Image.new("L", size, 255)
    page.paste(big, ((size[0] - side) // 2, (size[1] - side) // 2))
    buf = io.BytesIO()
    page.convert(mode).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _full(data: bytes) -> np.ndarray:
    """What every upload got before: the full decode."""
    return to_model_input(preprocess_image(decode_image(data)))


def test_a_big_jpeg_is_decoded_at_reduced_size_and_straight_to_grey() -> None:
    data = _photo(_garment(0), (4000, 3000))
    assert decode_image(data).size == (4000, 3000)
    reduced = decode_image(data, spec=FASHION_MNIST_SPEC)
    # The largest DCT scale (1/8) that keeps the shorter side >= 12 x 28 = 336 px.
    assert reduced.size == (500, 375)
    assert reduced.mode == "L"


def test_a_big_png_is_reduced_right_after_decoding() -> None:
    reduced = decode_image(_photo(_garment(0), (2400, 1800), "PNG"), spec=FASHION_MNIST_SPEC)
    assert reduced.size == (480, 360)  # 1800 // 336 = 5


def test_small_photos_keep_their_size() -> None:
    for fmt in ("JPEG", "PNG"):
        assert decode_image(_photo(_garment(0), (300, 280), fmt), spec=FASHION_MNIST_SPEC).size == (
            300,
            280,
        )


def _centroid(x: np.ndarray) -> np.ndarray:
    rows, cols = np.mgrid[:28, :28]
    return np.array([(x * rows).sum(), (x * cols).sum()]) / x.sum()


@pytest.mark.parametrize(
    ("size", "fmt"),
    [((1000, 800), "JPEG"), ((1600, 1200), "JPEG"), ((3000, 3000), "JPEG"), ((1800, 1400), "PNG")],
)
def test_reduced_decoding_gives_nearly_the_full_decode_model_input(
    size: tuple[int, int], fmt: str
) -> None:
    """Nearly: the item's box is found on a coarser grid (a reduced pixel is 1/4 to 1/2 of an
    output pixel here) and JPEG's DCT scaling is not Pillow's box filter, so canonicalize may
    place the item half a pixel apart (its odd-padding choice flips when the item's height
    in output pixels is near x.5, as these garments' are) and edge pixels change. So: the same
    ink within 3%, the same centre within 0.75 px, and the same picture once a half-pixel
    shift no longer matters (blurred, sigma 1 px). Measured here: at most 2.3%, 0.56 px and
    0.033; a wrong scale, orientation or inversion is far outside (ink x2, centre 5+ px). On
    2000 validation renders the answers match the full decode's within 0.2 pp
    (scripts/decode_reduced_check.py)."""
    for seed in range(5):
        data = _photo(_garment(seed), size, fmt)
        reduced, full = preprocess_bytes(data)[0, 0], _full(data)[0, 0]
        assert abs(reduced.sum() / full.sum() - 1) < 0.03
        assert np.abs(_centroid(reduced) - _centroid(full)).max() < 0.75
        blurred = np.abs(_gaussian_blur(reduced, 1.0) - _gaussian_blur(full, 1.0))
        assert blurred.mean() < 0.05


def test_transparency_is_averaged_premultiplied() -> None:
    """A transparent black page must not darken the item's edge when reduced early: the same
    as compositing onto white first (unpremultiplied averaging would be ~37 levels darker)."""
    rgba = np.zeros((1200, 1200, 4), np.uint8)  # transparent black
    rgba[300:900, 301:899] = (230, 230, 230, 255)  # a light opaque item, edges off the grid
    image = Image.fromarray(rgba, "RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, image).convert("L").reduce(5), np.int16)
    early = reduce_early(image, 224)
    assert early.size == (240, 240)
    composited = Image.alpha_composite(Image.new("RGBA", early.size, "white"), early)
    assert np.abs(np.asarray(composited.convert("L"), np.int16) - expected).max() <= 1


@pytest.mark.parametrize("kind", ["rgba", "palette", "gray16", "cmyk"])
def test_every_mode_reduces_to_the_same_answer(kind: str) -> None:
    item = _garment(3)
    page = np.asarray(Image.open(io.BytesIO(_photo(item, (1400, 1300), "PNG"))).convert("L"))
    if kind == "rgba":
        image = Image.fromarray(np.dstack([page] * 3 + [np.full_like(page, 255)]), "RGBA")
    elif kind == "palette":
        image = Image.fromarray(page).convert("P")
    elif kind == "gray16":
        image = Image.fromarray(page.astype(np.uint16) * 257)
    else:
        image = Image.fromarray(page).convert("CMYK")
    buf = io.BytesIO()
    image.save(buf, "TIFF" if kind == "cmyk" else "PNG")
    data = buf.getvalue()
    assert decode_image(data, spec=FASHION_MNIST_SPEC).size == (467, 434)  # 1300 // 336 = 3
    assert np.abs(preprocess_bytes(data) - _full(data)).mean() < 0.03


def test_letterbox_models_get_colour_and_a_size_fit_for_them() -> None:
    spec = InputSpec(size=64, channels=3, canonicalization="letterbox")
    data = _photo(_garment(1), (4000, 3000))
    decoded = decode_image(data, spec=spec)
    assert decoded.mode == "RGB"
    assert decoded.size == (2000, 1500)  # 3000 // (12 x 64) = 3: a 1/2 DCT scale
    assert preprocess_bytes(data, None, spec).shape == (1, 3, 64, 64)


def test_the_pixel_limit_is_sized_for_product_photos() -> None:
    from product_classifier.serving.settings import ServeSettings

    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    assert ServeSettings().max_pixels == DEFAULT_MAX_PIXELS
    buf = io.BytesIO()
    Image.new("1", (4097, 4096)).save(buf, "PNG")
    with pytest.raises(PreprocessingError) as info:
        decode_image(buf.getvalue(), PreprocessConfig(), FASHION_MNIST_SPEC)
    assert info.value.code == "image_too_large"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGB", "L", "P", "I;16", "CMYK", "1"])
def test_reducing_in_bands_equals_one_reduce(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """reduce_early works band by band (so no full-size converted copy exists); the result
    must be exactly one reduce of the whole (converted) image, odd sizes included."""
    import product_classifier.preprocessing as pp

    monkeypatch.setattr(pp, "_BAND_PIXELS", 10_000)  # bands of 15 rows: 47, the last one short
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (701, 604, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        image = Image.fromarray(rng.integers(0, 16, (701, 604), dtype=np.uint8), "P")
        image.putpalette(rng.integers(0, 256, 48, dtype=np.uint8).tobytes())
        whole = image.convert("RGB").reduce(3)
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(rgba)[..., 0].astype(np.uint16) * 257)
        whole = image.convert("I").reduce(3)
    elif mode == "1":
        image = rgba.convert("1")
        whole = image.convert("L").reduce(3)
    else:
        image = rgba.convert(mode)
        whole = image.reduce(3)
    banded = reduce_early(image, 200)  # 604 // 200 = 3
    assert banded.mode == whole.mode and banded.size == whole.size == (202, 234)
    np.testing.assert_array_equal(np.asarray(banded), np.asarray(whole))


def test_exif_orientation_is_applied_to_the_reduced_decode() -> None:
    arr = np.zeros((1000, 3000), np.uint8)
    arr[:, :500] = 255  # a bright band on the left, at the top once rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", exif=exif.tobytes())
    decoded = decode_image(buf.getvalue(), spec=FASHION_MNIST_SPEC)
    assert decoded.size == (500, 1500)  # 1000 // 336 = 2: half size, then rotated
    pixels = np.asarray(decoded)
    assert pixels[:200].mean() > 200 and pixels[-1000:].mean() < 50

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from product_classifier import preprocessing
from product_classifier.preprocessing import (
    FASHION_MNIST_SPEC,
    InputSpec,
    InputSpecError,
    PreprocessConfig,
    PreprocessingError,
    canonicalize,
    decode_image,
    fill_enclosed,
    from_fashion_mnist,
    is_dataset_form,
    letterbox,
    preprocess_bytes,
    preprocess_image,
    to_grayscale,
    to_model_input,
)


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _item(h=28, w=28) -> np.ndarray:
    """A bright 'item' on black, Fashion-MNIST style."""
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = 200
    arr[h // 4, w // 3 : 2 * w // 3] = 255
    return arr


def test_model_input_is_raw_bytes_over_255():
    raw = np.arange(784, dtype=np.uint32).reshape(28, 28).astype(np.uint8)
    x = to_model_input(raw)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0], raw.astype(np.float32) / 255)


def test_model_input_rejects_non_uint8():
    with pytest.raises(TypeError):
        to_model_input(np.zeros((28, 28), np.float32))


def test_a_fashion_mnist_png_round_trips_exactly():
    raw = _item()
    x = preprocess_bytes(_encode(Image.fromarray(raw)))
    np.testing.assert_array_equal(x, to_model_input(raw))


def test_dark_item_on_white_photo_is_inverted_cropped_and_centred():
    item = _item(280, 280)
    photo = np.full((600, 500), 255, np.uint8)
    photo[50:330, 30:310] = 255 - item  # dark item, off-centre on a white page
    out = canonicalize(to_grayscale(Image.fromarray(photo).convert("RGB")))
    assert out.shape == (28, 28)
    assert out[:, 0].max() < 30 and out[:, -1].max() < 30  # the page became dark margins
    rows = np.flatnonzero(out.max(axis=1) > 100)
    cols = np.flatnonzero(out.max(axis=0) > 100)
    # The item's longer side (its height) fills the canvas; it is centred horizontally.
    assert rows[0] <= 1 and rows[-1] >= 26
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1.5


def test_aspect_ratio_is_kept():
    wide = np.zeros((100, 400), np.uint8)
    wide[40:60, 20:380] = 255
    out = canonicalize(wide)
    rows = np.flatnonzero(out.max(axis=1) > 100)
    assert len(rows) <= 4  # 20/360 of 28 px tall, not stretched to a square


def test_transparency_is_composited_on_white_then_inverted():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[8:56, 24:40] = (20, 20, 20, 255)  # opaque dark bar, transparent elsewhere
    out = preprocess_bytes(_encode(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0, 14, 0] < 0.1 and out[0, 0, 14, 14] > 0.8


def test_exif_orientation_is_applied():
    arr = np.zeros((20, 60), np.uint8)
    arr[:, :10] = 255
    image = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    decoded = decode_image(_encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 60)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "empty_file"),
        (b"hello, this is text", "not_an_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not_an_image"),
    ],
)
def test_bad_bytes_raise_preprocessing_errors(payload, code):
    with pytest.raises(PreprocessingError) as info:
        decode_image(payload)
    assert info.value.code == code


def test_truncated_png_is_a_corrupt_image():
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(PreprocessingError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.code == "corrupt_image"


def test_pixel_limit_is_checked_before_decoding():
    data = _encode(Image.new("L", (200, 200)))
    with pytest.raises(PreprocessingError) as info:
        decode_image(data, PreprocessConfig(max_pixels=10_000))
    assert info.value.code == "image_too_large"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "CMYK", "I;16", "1"])
def test_every_common_mode_gives_a_valid_tensor(mode):
    image = Image.fromarray(_item(40, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    x = preprocess_bytes(_encode(image, fmt))
    assert x.shape == (1, 1, 28, 28) and np.isfinite(x).all()


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 80),
    w=st.integers(1, 80),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["L", "RGB", "RGBA"]),
)
def test_any_decodable_image_gives_a_finite_unit_tensor(h, w, seed, mode):
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    image = Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode)
    x = preprocess_bytes(_encode(image))
    assert x.shape == (1, 1, 28, 28)
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


# -- photos -> Fashion-MNIST form (canonicalize) --------------------------------------------


def test_a_28x28_dark_background_image_passes_through_bit_for_bit():
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    raw[0, :] = raw[-1, :] = raw[:, 0] = raw[:, -1] = 0  # dark border: Fashion-MNIST form
    np.testing.assert_array_equal(canonicalize(raw), raw)


def test_a_low_contrast_item_is_stretched_to_full_brightness():
    """A navy item on a grey page: Fashion-MNIST items all peak at 255, so must this one."""
    page = np.full((300, 200), 200, np.uint8)
    page[40:260, 50:150] = 140  # 60 levels darker than the page
    out = canonicalize(page)
    assert out.max() >= 250
    assert out[:, 0].max() == 0 and out[:, -1].max() == 0  # the page is black, not grey


def test_blank_and_uniform_images_stay_dark_and_are_not_amplified():
    for value in (0, 37, 255):
        out = canonicalize(np.full((300, 200), value, np.uint8))
        assert out.max() == 0
    noise = np.clip(np.random.default_rng(0).normal(250, 2, (300, 200)), 0, 255).astype(np.uint8)
    assert canonicalize(noise).max() < 30  # sensor noise below the threshold is not an item


def test_odd_padding_goes_top_left_like_the_dataset():
    """A 13-px-wide item on 28 px: Fashion-MNIST puts 8 columns left and 7 right."""
    photo = np.full((280, 280), 255, np.uint8)
    photo[:, 70:200] = 0  # 130 of 280 px wide -> 13 of 28
    photo = np.pad(photo, 40, constant_values=255)
    out = canonicalize(photo)
    cols = np.flatnonzero(out.max(axis=0) > 128)
    assert (cols[0], cols[-1]) == (8, 20)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 2), (2, 1), (10, 4000), (4000, 10), (27, 29)])
def test_extreme_shapes_give_a_valid_image(h, w):
    gray = np.full((h, w), 255, np.uint8)
    gray[h // 3 : max(h // 3 + 1, 2 * h // 3), w // 3 : max(w // 3 + 1, 2 * w // 3)] = 0
    out = canonicalize(gray)
    assert out.shape == (28, 28) and out.dtype == np.uint8


def test_a_thin_strip_is_not_blown_up_to_a_square():
    strip = np.full((10, 4000), 255, np.uint8)
    strip[2:8, 100:3900] = 0
    out = canonicalize(strip)
    rows = np.flatnonzero(out.max(axis=1) > 0)
    assert len(rows) <= 2  # 6/3800 of 28 px tall
    assert np.flatnonzero(out.max(axis=0) > 0).size >= 26


def test_a_big_photo_is_cheap():
    """A 6000x6000 page never becomes a float image of its own size (the square is sampled
    after an integer box reduction). Measured as memory, not time: a float32 copy of the page
    would be 144 MB, and a timed assert would fail on a busy machine."""
    import tracemalloc

    page = np.full((6000, 6000), 255, np.uint8)
    page[1000:5000, 2000:4000] = 30
    tracemalloc.start()
    try:
        out = canonicalize(page)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Measured: 73 MB (the uint8 inversion and the item mask, 36 MB each); a float32 page
    # alone would add 144 MB.
    assert peak < 120_000_000
    cols = np.flatnonzero(out.max(axis=0) > 128)
    assert 6 <= cols[0] <= 8 and 20 <= cols[-1] <= 21  # 2000/4000 of 28 = 14 px, centred


def test_crop_margin_shrinks_the_item():
    photo = np.full((300, 300), 255, np.uint8)
    photo[50:250, 100:200] = 0
    tight = np.flatnonzero(canonicalize(photo).max(axis=1) > 128)
    loose = np.flatnonzero(
        canonicalize(photo, PreprocessConfig(crop_margin=0.25)).max(axis=1) > 128
    )
    assert len(tight) == 28 and 18 <= len(loose) <= 20  # 28 / (1 + 2 x 0.25)


_MODES = ["L", "RGB", "RGBA", "P", "LA", "1", "I;16", "CMYK", "I", "F", "PA"]
_FORMATS = {
    "PNG": {"L", "RGB", "RGBA", "P", "LA", "1", "I;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "WEBP": {"RGB", "RGBA"},
    "GIF": {"L", "P"},
    "BMP": {"L", "RGB", "1", "P"},
    "TIFF": {"L", "RGB", "RGBA", "P", "LA", "1", "I;16", "CMYK", "I", "F"},
}


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(_MODES),
    fmt=st.sampled_from(sorted(_FORMATS)),
    smooth=st.booleans(),
)
def test_any_decodable_image_of_any_mode_size_and_format_gives_a_unit_tensor(
    h, w, seed, mode, fmt, smooth
):
    """Property: whatever decodes (any mode, any size, any container) becomes a finite
    float32 [1, 1, 28, 28] in [0, 1]; nothing else is raised but PreprocessingError."""
    rng = np.random.default_rng(seed)
    if smooth:  # a product-like blob on a page rather than noise
        arr = np.full((h, w), rng.integers(0, 256), np.uint8)
        arr[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)] = (
            rng.integers(0, 256)
        )
    else:
        arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
    image = (
        Image.fromarray(arr).convert("RGB").convert(mode) if mode != "L" else Image.fromarray(arr)
    )
    if mode not in _FORMATS[fmt]:
        fmt = "TIFF" if mode in _FORMATS["TIFF"] else "PNG"
    if mode == "PA":
        image, fmt = Image.fromarray(arr).convert("P").convert("PA"), "PNG"
    try:
        data = _encode(image, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this combination; nothing to decode
    try:
        x = preprocess_bytes(data)
    except PreprocessingError:
        return  # refused cleanly (e.g. a codec that cannot read its own output back)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


# -- input specs and the letterbox canonicalisation (catalog models) ---------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 64}, "fashion-mnist' means 28x28"),
        ({"channels": 3}, "fashion-mnist' means 28x28"),
        ({"canonicalization": "crop"}, "not one of"),
        ({"size": 8, "canonicalization": "letterbox"}, r"\[16, 512\]"),
        ({"size": 64, "channels": 2, "canonicalization": "letterbox"}, "1 .grey. or 3"),
    ],
)
def test_impossible_input_specs_say_why(kwargs: dict, message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        InputSpec(**kwargs)


def test_a_spec_round_trips_through_onnx_metadata() -> None:
    spec = InputSpec(size=96, channels=3, canonicalization="letterbox")
    assert InputSpec.from_metadata({"input_spec": spec.to_json()}) == spec
    assert InputSpec.from_metadata({}) == FASHION_MNIST_SPEC  # today's files: no key
    with pytest.raises(InputSpecError, match="unknown input spec keys"):
        InputSpec.from_dict({"size": 28, "mean": 0.5})


def test_letterbox_trims_the_page_keeps_the_aspect_and_centres_on_white() -> None:
    spec = InputSpec(size=64, channels=3, canonicalization="letterbox")
    photo = Image.new("RGB", (900, 600), "white")
    photo.paste((10, 120, 200), (300, 250, 700, 450))  # a 400x200 item, off-centre
    out = letterbox(photo, spec)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    item = np.abs(out.astype(int) - 255).sum(axis=2) > 48
    rows, cols = np.flatnonzero(item.any(axis=1)), np.flatnonzero(item.any(axis=0))
    # Longer side fills the square (less the 4% margin), aspect 2:1 kept, centred.
    assert 56 <= cols[-1] - cols[0] + 1 <= 64
    assert 26 <= rows[-1] - rows[0] + 1 <= 34
    assert abs((rows[0] + rows[-1]) / 2 - 31.5) <= 1.5
    assert tuple(out[32, 32]) == pytest.approx((10, 120, 200), abs=6)
    assert tuple(out[0, 0]) == (255, 255, 255)


def test_letterbox_composites_transparency_on_white_and_can_be_grey() -> None:
    spec = InputSpec(size=32, channels=1, canonicalization="letterbox")
    icon = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    icon.paste((0, 0, 0, 255), (50, 50, 150, 150))
    out = preprocess_image(icon, None, spec)
    assert out.shape == (32, 32)
    assert out[0, 0] == 255 and out[16, 16] == 0


def test_model_input_of_colour_images_is_channels_first() -> None:
    spec = InputSpec(size=16, channels=3, canonicalization="letterbox")
    images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    images[..., 1] = 255  # green
    x = to_model_input(images, spec)
    assert x.shape == (2, 3, 16, 16)
    assert x[:, 1].min() == 1.0 and x[:, 0].max() == 0.0


def test_preprocess_bytes_follows_the_spec() -> None:
    spec = InputSpec(size=48, channels=3, canonicalization="letterbox")
    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 10, 10)).save(buf, "JPEG")
    assert preprocess_bytes(buf.getvalue(), None, spec).shape == (1, 3, 48, 48)
    assert preprocess_bytes(buf.getvalue()).shape == (1, 1, 28, 28)  # the default stays


def test_fashion_mnist_images_become_dark_items_on_white_for_a_letterbox_spec() -> None:
    item = np.zeros((1, 28, 28), dtype=np.uint8)
    item[0, 10:18, 10:18] = 255  # bright item on dark, Fashion-MNIST's orientation
    spec = InputSpec(size=56, channels=3, canonicalization="letterbox")
    out = from_fashion_mnist(item, spec)
    assert out.shape == (1, 56, 56, 3)
    assert tuple(out[0, 0, 0]) == (255, 255, 255) and tuple(out[0, 28, 28]) == (0, 0, 0)
    assert from_fashion_mnist(item, FASHION_MNIST_SPEC) is item


def test_an_outline_drawing_becomes_a_filled_silhouette() -> None:
    """A garment drawn as a contour on a white page: its inside is background the item
    encloses, raised to a flat grey, while the page around it stays dark."""
    page = np.full((400, 400), 255, np.uint8)
    page[60:340, 80:320] = 0  # a dark 8 px contour...
    page[68:332, 88:312] = 255  # ...around a white inside
    out = canonicalize(page)
    assert out[14, 14] >= 120  # the inside, now grey
    assert out[0, 0] < 30 and out[:, 0].max() < 30  # the page outside, still dark
    # Without a closed contour nothing is enclosed: an open U keeps its inside dark.
    page[60:68, 88:312] = 255
    assert canonicalize(page)[14, 14] < 60


def test_fill_enclosed_leaves_what_the_border_reaches_and_keeps_bright_pixels() -> None:
    image = np.zeros((28, 28), np.uint8)
    image[5:20, 5:20] = 255
    image[8:17, 8:17] = 0  # a hole
    image[10, 10] = 30  # a dim pixel in it: raised to the fill, never lowered
    image[12, 12] = 200  # a bright detail in it: kept
    out = fill_enclosed(image, level=0.2, fill=0.55)
    assert out[9, 9] == out[10, 10] == round(0.55 * 255) and out[12, 12] == 200
    assert out[0, 0] == 0 and (out[5:20, 5:20] > 0).all()
    assert fill_enclosed(np.zeros((28, 28), np.uint8)) is not None
    assert not fill_enclosed(np.zeros((28, 28), np.uint8)).any()


@pytest.mark.parametrize(
    ("size", "fmt"), [((28, 28), "PNG"), ((28, 28), "JPEG"), ((28, 28), "WEBP")]
)
def test_a_28x28_upload_is_in_the_dataset_form_whatever_its_format(size, fmt) -> None:
    data = _encode(Image.fromarray(_item(*size)), fmt)
    assert is_dataset_form(data)
    # ...and it is exactly what canonicalize passes through (the review policy relies on it).
    gray = to_grayscale(decode_image(data))
    assert np.array_equal(canonicalize(gray), gray)


@pytest.mark.parametrize("payload", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 8])
def test_pictures_and_broken_files_are_not_in_the_dataset_form(payload: bytes) -> None:
    assert not is_dataset_form(payload)
    assert not is_dataset_form(_encode(Image.fromarray(_item(56, 56))))
    assert not is_dataset_form(_encode(Image.fromarray(_item(28, 29)), "JPEG"))


def test_fill_enclosed_fills_exactly_the_holes_scipy_finds() -> None:
    """The bit-parallel flood fill against the reference implementation, on random masks of
    every small shape (1-px images, strips, the 28x28 the service uses)."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = rng.integers(1, 40, size=2)
        image = (rng.random((height, width)) < rng.uniform(0.2, 0.8)).astype(np.uint8) * 255
        dark = image <= round(0.2 * 255)
        holes = ndimage.binary_fill_holes(~dark) & dark  # 4-connected background, like ours
        expected = image.copy()
        expected[holes] = round(0.55 * 255)
        assert np.array_equal(fill_enclosed(image, level=0.2, fill=0.55), expected)


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"exif": Image.Exif()}, {"quality": 20, "optimize": True}],
    ids=["baseline", "progressive", "exif", "optimized"],
)
@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_the_jpeg_header_walk_reads_the_size_pillow_reads(options: dict, mode: str) -> None:
    for size in [(28, 28), (28, 29), (640, 480), (3, 5000)]:
        data = _encode(Image.new(mode, size), "JPEG", **options)
        assert is_dataset_form(data) is (size == (28, 28))
        assert preprocessing._jpeg_size(data) == Image.open(io.BytesIO(data)).size
    assert preprocessing._jpeg_size(b"\xff\xd8\xff") is None  # too short: Pillow decides

"""Fashion-MNIST images re-rendered as shop photos, to measure the service on real uploads.

The model is only ever trained on 28x28 bright-on-black crops, but a shop sends catalogue
photos: a large, dark-on-white, coloured product placed somewhere on a white page, slightly
tilted, compressed as JPEG/PNG/WebP. :func:`render_photo` turns one image into such a
photo; :func:`build_photo_set` does it for a deterministic subset. Comparing the accuracy on the
photos (decoded by the shared preprocessing, in-process or through the HTTP API) with the
accuracy on the very same raw images measures what preprocessing loses — the model is the same.

Which images: renders of the **validation** split (``split="val"``, the released model's
held-out training images) are what preprocessing choices are made on
(``scripts/preprocessing_sweep.py``); renders of the **test** split only report a release.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from product_classifier.constants import CLASS_NAMES

FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")
# Product colours (RGB). Luminance <= ~170 so the item stands out from the white page like a
# real product shot; a white shirt on a white page is a photography problem, not ours.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (30, 30, 30),
    (60, 60, 70),
    (20, 40, 110),
    (40, 70, 160),
    (150, 30, 40),
    (190, 40, 60),
    (30, 100, 60),
    (90, 120, 40),
    (110, 70, 40),
    (150, 100, 60),
    (100, 40, 120),
    (200, 90, 20),
    (110, 110, 110),
)


@dataclass(frozen=True)
class PhotoStyle:
    """The ranges a rendered photo's parameters are drawn from."""

    min_side: int = 200  # the item's longer side on the photo, in pixels
    max_side: int = 500
    max_rotation_deg: float = 5.0
    min_margin: float = 0.08  # white margin on each side, as a fraction of the item's size
    max_margin: float = 0.6
    formats: tuple[str, ...] = FORMATS


@dataclass(frozen=True)
class Photo:
    """One rendered photo and where it came from."""

    index: int  # position in its split's images (the test set, or the validation split)
    label: int
    data: bytes
    format: str
    size: tuple[int, int]  # (width, height) of the photo
    rotation_deg: float
    colour: tuple[int, int, int]
    split: str = "test"

    @property
    def filename(self) -> str:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[self.format]
        return f"{self.split}{self.index:05d}_{CLASS_NAMES[self.label].replace('/', '-')}.{ext}"


def render_photo(
    image: np.ndarray, rng: np.random.Generator, style: PhotoStyle | None = None
) -> tuple[bytes, dict[str, object]]:
    """28x28 uint8 (bright item on black) -> encoded shop photo and the parameters drawn."""
    style = style or PhotoStyle()
    if image.shape != (28, 28) or image.dtype != np.uint8:
        raise ValueError(f"expected a 28x28 uint8 image, got {image.shape} {image.dtype}")
    side = int(rng.integers(style.min_side, style.max_side + 1))
    colour = PALETTE[int(rng.integers(len(PALETTE)))]
    angle = float(rng.uniform(-style.max_rotation_deg, style.max_rotation_deg))
    fmt = style.formats[int(rng.integers(len(style.formats)))]

    # Upscale the coverage map smoothly (a camera sees a continuous object, not pixels).
    coverage = Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC)
    # Rotate coverage, not colour, so the corners that appear are empty page (coverage 0).
    coverage = coverage.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    v = np.asarray(coverage, dtype=np.float32)[..., None] / 255.0
    page = float(rng.uniform(244, 255))  # white or a slightly grey studio page
    rgb = page * (1.0 - v) + np.asarray(colour, np.float32) * v
    item = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)

    ih, iw = item.shape[:2]
    margins = rng.uniform(style.min_margin, style.max_margin, size=4) * max(ih, iw)
    left, right, top, bottom = (int(m) for m in margins)
    canvas_w, canvas_h = iw + left + right, ih + top + bottom
    if canvas_w == canvas_h:  # a shop page is rarely square; keep the test honest
        canvas_w += 1 + int(rng.integers(1, 20))
    canvas = np.full((canvas_h, canvas_w, 3), round(page), dtype=np.uint8)
    canvas[top : top + ih, left : left + iw] = item

    buf = io.BytesIO()
    picture = Image.fromarray(canvas, "RGB")
    if fmt == "JPEG":
        picture.save(buf, "JPEG", quality=int(rng.integers(75, 96)))
    elif fmt == "WEBP":
        picture.save(buf, "WEBP", quality=int(rng.integers(80, 96)), method=2)
    else:
        picture.save(buf, "PNG", optimize=False, compress_level=1)
    params: dict[str, object] = {
        "format": fmt,
        "size": (canvas_w, canvas_h),
        "rotation_deg": angle,
        "colour": colour,
    }
    return buf.getvalue(), params


def photo_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` distinct indices into ``labels``, drawn by ``seed``, sorted (the same for photos
    and raw).

    Nested: the first ``n`` of one permutation, so the 1000-photo set is part of the 2000 one.
    """
    if not 1 <= n <= len(labels):
        raise ValueError(f"n must be in 1..{len(labels)}, got {n}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(len(labels))[:n])


def build_photo_set(
    images: np.ndarray,
    labels: np.ndarray,
    n: int = 2000,
    seed: int = 0,
    style: PhotoStyle | None = None,
    split: str = "test",
) -> list[Photo]:
    """Render ``n`` of ``images`` (of ``split``) as photos; the same ``seed`` gives
    byte-identical photos."""
    indices = photo_subset(labels, n, seed)
    photos = []
    for index in indices:
        # One generator per image: photo i does not change when n does.
        rng = np.random.default_rng([seed, int(index)])
        data, params = render_photo(images[index], rng, style)
        photos.append(
            Photo(
                index=int(index),
                label=int(labels[index]),
                data=data,
                format=str(params["format"]),
                size=params["size"],  # type: ignore[arg-type]
                rotation_deg=float(params["rotation_deg"]),  # type: ignore[arg-type]
                colour=params["colour"],  # type: ignore[arg-type]
                split=split,
            )
        )
    return photos


def save_photos(photos: Sequence[Photo], directory: Path) -> list[Path]:
    """Write the photos to ``directory`` (to look at them, or to upload them by hand)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in photos:
        path = directory / photo.filename
        path.write_bytes(photo.data)
        paths.append(path)
    return paths


# -- evaluation -------------------------------------------------------------------------------

PredictFn = Callable[[Sequence[bytes]], list[int | None]]  # None: the upload was refused


@dataclass
class PhotoEvaluation:
    """Photo accuracy vs raw-image accuracy on the same subset of one split."""

    n: int
    raw_accuracy: float
    photo_accuracy: float
    refused: int  # photos the service answered with an error (counted as wrong)
    per_format: dict[str, float] = field(default_factory=dict)
    per_class_photo: dict[str, float] = field(default_factory=dict)
    per_class_raw: dict[str, float] = field(default_factory=dict)

    @property
    def gap_pp(self) -> float:
        """Raw minus photo accuracy, in percentage points (positive: photos are worse)."""
        return 100.0 * (self.raw_accuracy - self.photo_accuracy)

    def summary(self) -> str:
        lines = [
            f"photos: {self.n}  raw accuracy {self.raw_accuracy:.4f}  "
            f"photo accuracy {self.photo_accuracy:.4f}  gap {self.gap_pp:+.2f} pp  "
            f"refused {self.refused}",
            "per format: "
            + ", ".join(f"{fmt} {acc:.4f}" for fmt, acc in sorted(self.per_format.items())),
            "per class (raw -> photo): "
            + ", ".join(
                f"{name} {self.per_class_raw[name]:.3f}->{self.per_class_photo[name]:.3f}"
                for name in CLASS_NAMES
                if name in self.per_class_photo
            ),
        ]
        return "\n".join(lines)


def score_photos(
    photos: Sequence[Photo], photo_predictions: Sequence[int | None], raw_predictions: np.ndarray
) -> PhotoEvaluation:
    labels = np.array([p.label for p in photos])
    photo_pred = np.array([-1 if p is None else p for p in photo_predictions])
    raw_pred = np.asarray(raw_predictions)
    photo_ok = photo_pred == labels
    raw_ok = raw_pred == labels
    formats = np.array([p.format for p in photos])
    return PhotoEvaluation(
        n=len(photos),
        raw_accuracy=float(raw_ok.mean()),
        photo_accuracy=float(photo_ok.mean()),
        refused=int((photo_pred < 0).sum()),
        per_format={str(f): float(photo_ok[formats == f].mean()) for f in np.unique(formats)},
        per_class_photo={
            CLASS_NAMES[c]: float(photo_ok[labels == c].mean()) for c in np.unique(labels)
        },
        per_class_raw={
            CLASS_NAMES[c]: float(raw_ok[labels == c].mean()) for c in np.unique(labels)
        },
    )


def raw_image_probabilities(
    model_path: str | Path, cascade: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 [N, 28, 28] -> probabilities, with the model file alone or (``cascade``) the
    serving cascade its card describes, loaded the way the service loads it."""
    if not cascade:
        from product_classifier.evaluation.evaluate import onnx_logits
        from product_classifier.inference.predictor import softmax

        return lambda images: softmax(onnx_logits(model_path, images))
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.preprocessing import to_model_input

    predictor = load_verified_model(model_path, cascade=True).predictor

    def probabilities(images: np.ndarray) -> np.ndarray:
        x = to_model_input(images)
        return np.concatenate(
            [predictor.predict_proba(x[i : i + 256]) for i in range(0, len(x), 256)]
        )

    return probabilities


def raw_image_classifier(
    model_path: str | Path, cascade: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 [N, 28, 28] -> the model's own class ids (:func:`raw_image_probabilities`)."""
    probabilities = raw_image_probabilities(model_path, cascade)
    return lambda images: probabilities(images).argmax(axis=1)


def service_images(datas: Sequence[bytes]) -> tuple[list[np.ndarray], list[int]]:
    """Encoded photos -> the canonical 28x28 images the service's preprocessing makes of them
    (a large JPEG decoded at reduced size, as the service decodes it), and the indices of the
    photos that decoded."""
    from product_classifier.preprocessing import (
        FASHION_MNIST_SPEC,
        PreprocessingError,
        decode_image,
        preprocess_image,
    )

    canon: list[np.ndarray] = []
    ok: list[int] = []
    for i, data in enumerate(datas):
        try:
            canon.append(preprocess_image(decode_image(data, spec=FASHION_MNIST_SPEC)))
            ok.append(i)
        except PreprocessingError:
            continue
    return canon, ok


def local_photo_predictor(model_path: str | Path, cascade: bool = False) -> PredictFn:
    """Classify encoded photos in-process as the service answers them: its preprocessing, and
    its review policy for the upload (the card's; a picture's can re-weigh the categories)."""
    from product_classifier.inference.model_card import default_card_path, load_model_card
    from product_classifier.inference.review import review_policy
    from product_classifier.preprocessing import is_dataset_form

    probabilities = raw_image_probabilities(model_path, cascade)
    card_path = default_card_path(Path(model_path))
    policy = review_policy(load_model_card(card_path) if card_path.is_file() else {})

    def predict(datas: Sequence[bytes]) -> list[int | None]:
        canon, ok = service_images(datas)
        out: list[int | None] = [None] * len(datas)
        if canon:
            probs = probabilities(np.stack(canon))
            for i, row in zip(ok, probs, strict=True):
                answer = policy.for_upload(not is_dataset_form(datas[i])).calibrate(row[None])
                out[i] = int(answer.argmax())
        return out

    return predict


def http_photo_predictor(
    url: str, api_key: str | None = None, batch_files: int = 32, timeout_s: float = 60.0
) -> PredictFn:
    """Classify encoded photos through a running service's ``/v1/predict/batch``."""
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}

    def predict(datas: Sequence[bytes]) -> list[int | None]:
        out: list[int | None] = []
        with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers) as client:
            for start in range(0, len(datas), batch_files):
                chunk = datas[start : start + batch_files]
                files = [("files", (f"{start + i}.img", d)) for i, d in enumerate(chunk)]
                response = client.post("/v1/predict/batch", files=files)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"{url}/v1/predict/batch answered {response.status_code}: "
                        f"{response.text[:300]}"
                    )
                for result in response.json()["results"]:
                    out.append(int(result["class_id"]) if "class_id" in result else None)
        return out

    return predict


PhotoSplit = Literal["val", "test"]


def split_images(
    split: PhotoSplit, model_path: str | Path, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, labels) of ``split``: the 10k test set, or the validation split of the
    model's card (the images it held out; what preprocessing choices are made on)."""
    if split == "test":
        from product_classifier.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist("test", data_dir=data_dir)
    if split != "val":
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    from product_classifier.data.split import fashion_mnist_split
    from product_classifier.inference.model_card import default_card_path, load_model_card

    card_path = default_card_path(Path(model_path))
    card = load_model_card(card_path) if card_path.is_file() else {}
    part = fashion_mnist_split(card.get("config", {}).get("data"), data_dir)
    return part.val_images, part.val_labels


def evaluate_photos(
    model_path: str | Path,
    n: int = 2000,
    seed: int = 0,
    url: str | None = None,
    api_key: str | None = None,
    data_dir: Path | None = None,
    save_dir: Path | None = None,
    split: PhotoSplit = "val",
) -> PhotoEvaluation:
    """Render ``n`` photos of ``split``, classify them (through ``url`` or in-process) and
    compare with the raw images of the same subset, classified in-process by ``model_path``.

    The default is the validation split: this is the tool preprocessing is tuned with, and
    test images are for reporting a release (``split="test"``)."""
    from product_classifier.evaluation.evaluate import onnx_logits

    images, labels = split_images(split, model_path, data_dir)
    photos = build_photo_set(images, labels, n=n, seed=seed, split=split)
    if save_dir is not None:
        save_photos(photos, save_dir)
    indices = np.array([p.index for p in photos])
    raw_predictions = onnx_logits(model_path, images[indices]).argmax(axis=1)
    predict = http_photo_predictor(url, api_key) if url else local_photo_predictor(model_path)
    photo_predictions = predict([p.data for p in photos])
    return score_photos(photos, photo_predictions, raw_predictions)

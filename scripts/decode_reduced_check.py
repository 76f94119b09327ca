"""Reduced-size decoding (``Image.draft`` / early reduce) against the full decode, same run.

    flock /tmp/pc-heavy.lock timeout 600 .venv/bin/python scripts/decode_reduced_check.py \
        [--n 2000] [--factors 4,8,12,16] [--out docs/evidence/decode-reduced.json]

For the full decode (``decode_image(data)``, what every upload got before) and for reduced
decoding at each ``REDUCED_DECODE_FACTOR`` in ``--factors`` (``decode_image(data, spec=...)``),
it scores the served default (the cascade the card describes) on

* ``--n`` renders of the released model's VALIDATION images as shop photos
  (``evaluation/photos.py``, seed 0) — never the test split;
* the real-picture DEV part (``data/real-pictures/dev``; out-of-scope pictures left out:
  accuracy is over the categories, as ``export/review.py`` reports it);

and times decode + preprocess of one 600x600 catalog JPEG (the load test's recipe, built from
a validation image) with ``timeit``, best of 7 repeats, every path in the same process, then
1200, 2400 and 4000 px squares with the module's factor against the full decode.
The factor whose accuracy stays within 0.2 pp of the full decode on both sets is the one the
module uses; the JSON records every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from product_classifier import preprocessing as pp
from product_classifier.data.folder_import import category_of
from product_classifier.evaluation.photos import build_photo_set
from product_classifier.inference.model_card import load_model_card, load_verified_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "artifacts/model.int8.onnx"
DEV = ROOT / "data/real-pictures/dev"
OUT = ROOT / "docs/evidence/decode-reduced.json"


def catalog_jpeg(pixels: np.ndarray, size: int = 600, quality: int = 90) -> bytes:
    """The load test's catalog photo: the item dark on white, ~70% of a size x size page."""
    item = int(size * 0.7)
    big = Image.fromarray(255 - pixels).resize((item, item), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size, size), 255)
    canvas.paste(big, ((size - item) // 2, (size - item) // 2))
    buf = io.BytesIO()
    canvas.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def validation_images() -> tuple[np.ndarray, np.ndarray]:
    """The released model's validation split (Fashion-MNIST train, the card's split)."""
    from product_classifier.data.split import fashion_mnist_split

    data = load_model_card(MODEL.with_name("model_card.json")).get("config", {}).get("data")
    split = fashion_mnist_split(data)
    return split.val_images, split.val_labels


def preprocess(factor: int | None) -> Callable[[bytes], np.ndarray]:
    """bytes -> canonical 28x28: full decode (None) or reduced at ``factor``."""

    def run(data: bytes) -> np.ndarray:
        pp.REDUCED_DECODE_FACTOR = factor or 8
        spec = None if factor is None else pp.FASHION_MNIST_SPEC
        return pp.preprocess_image(pp.decode_image(data, None, spec))

    return run


def classify(predictor: Any, canon: np.ndarray) -> np.ndarray:
    x = pp.to_model_input(canon)
    return np.concatenate(
        [predictor.predict_proba(x[i : i + 256]) for i in range(0, len(x), 256)]
    ).argmax(axis=1)


def dev_pictures() -> tuple[list[bytes], np.ndarray]:
    datas, labels = [], []
    for folder in sorted(p for p in DEV.iterdir() if p.is_dir()):
        label = category_of(folder.name)
        if label is None:  # out-of-scope: no category to be right about
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in pp.IMAGE_EXTENSIONS:
                datas.append(path.read_bytes())
                labels.append(label)
    return datas, np.array(labels)


def score(
    predictor: Any, datas: list[bytes], labels: np.ndarray, factor: int | None
) -> tuple[np.ndarray, np.ndarray]:
    run = preprocess(factor)
    canon = np.stack([run(d) for d in datas])
    return canon, classify(predictor, canon) == labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--factors", default="4,8,12,16")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    factors: list[int | None] = [None, *(int(f) for f in args.factors.split(","))]
    original_factor = pp.REDUCED_DECODE_FACTOR

    predictor = load_verified_model(MODEL, cascade=True).predictor
    images, labels = validation_images()
    photos = build_photo_set(images, labels, n=args.n, seed=0)
    sets = {
        "validation_renders": ([p.data for p in photos], np.array([p.label for p in photos])),
        "real_pictures_dev": dev_pictures(),
    }
    results: dict[str, Any] = {}
    for name, (datas, truth) in sets.items():
        full_canon, full_ok = score(predictor, datas, truth, None)
        rows = {"full": {"accuracy": float(full_ok.mean())}}
        for factor in factors[1:]:
            canon, ok = score(predictor, datas, truth, factor)
            diff = np.abs(canon.astype(np.int16) - full_canon.astype(np.int16))
            rows[f"factor_{factor}"] = {
                "accuracy": float(ok.mean()),
                "delta_pp": 100.0 * float(ok.mean() - full_ok.mean()),
                "answers_changed_right_to_wrong": int((full_ok & ~ok).sum()),
                "answers_changed_wrong_to_right": int((~full_ok & ok).sum()),
                "mean_abs_pixel_diff": float(diff.mean()),
                "p99_abs_pixel_diff": float(np.percentile(diff, 99)),
            }
        results[name] = {"images": len(datas), **rows}
        print(name, json.dumps(results[name], indent=1))

    item = images[int(np.flatnonzero(labels == 0)[0])]
    jpeg = catalog_jpeg(item)
    timing: dict[str, float] = {}
    for factor in factors:
        run = preprocess(factor)
        best = min(timeit.repeat(lambda run=run: run(jpeg), number=200, repeat=7)) / 200
        timing["full" if factor is None else f"factor_{factor}"] = best * 1000.0
    results["decode_preprocess_ms_600x600_jpeg"] = timing
    results["speedup_vs_full"] = {k: timing["full"] / v for k, v in timing.items()}
    print(json.dumps(results["decode_preprocess_ms_600x600_jpeg"], indent=1))
    # Larger catalog photos, the module's factor against the full decode.
    by_size: dict[str, dict[str, float]] = {}
    for side in (1200, 2400, 4000):
        big = catalog_jpeg(item, side)
        row = {}
        for name, factor in (("full", None), ("reduced", original_factor)):
            run = preprocess(factor)
            best = min(timeit.repeat(lambda run=run, big=big: run(big), number=5, repeat=5)) / 5
            row[name] = best * 1000.0
        by_size[f"{side}x{side}"] = row
    pp.REDUCED_DECODE_FACTOR = original_factor
    results[f"decode_preprocess_ms_by_size_factor_{original_factor}"] = by_size
    print(json.dumps(by_size, indent=1))
    results["setup"] = {
        "command": "scripts/decode_reduced_check.py " + f"--n {args.n} --factors {args.factors}",
        "model": "the served cascade of artifacts/model.int8.onnx",
        "validation_renders": f"{args.n} validation images (card split) rendered, seed 0",
        "timing": "timeit, best of 7 x 200 calls, one 600x600 RGB JPEG (quality 90); "
        "larger sizes best of 5 x 5 calls",
        "python": platform.python_version(),
        "pillow": Image.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Would straightening tilted items in ``canonicalize`` help real pictures? On DEV data only.

    flock /tmp/pc-heavy.lock timeout 900 .venv/bin/python scripts/deskew_sweep.py \
        [--dev data/real-pictures/dev] [--n 1500] [--out docs/evidence/deskew-sweep.json]

Icons often draw a running shoe tilted by 30-45 degrees; Fashion-MNIST's sneakers lie within
~20 degrees of flat (95th percentile of the main axis' tilt of elongated training sneakers,
printed by this script). A *deskew* step would rotate a picture's item so that its main axis
(the mask's second moments) lies flat, but only when the item is elongated (axis ratio at
least ``min_elongation``) and tilted between ``min_tilt`` and ``max_tilt`` degrees, so that
upright items (trousers, dresses) and Fashion-MNIST's own poses are left alone. 28x28 uploads
never reach it.

Scored like ``scripts/outline_fill_sweep.py``: the served default's own answers (the pictures'
per-category bias is fitted after preprocessing choices, so it takes no part) on

- the real-picture **dev** part: balanced accuracy over the ten categories;
- ``--n`` renders of Fashion-MNIST **validation** images as shop photos, which are rotated by
  up to a few degrees (``evaluation/photos.py``): deskew must not cost them accuracy.

The rule, fixed before the run: the best dev balanced accuracy among settings whose render
accuracy is within 0.2 pp of no deskew, adopted only if it beats no deskew by at least 2.5 pp
(about four of the dev part's 168 pictures: less is within what one design family moves).
No test picture or test image is read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from product_classifier import preprocessing as pp
from product_classifier.constants import IMAGE_SIZE

MIN_TILTS = (20.0, 25.0)
MAX_TILTS = (50.0,)
MIN_ELONGATIONS = (1.8, 2.2)
MAX_RENDER_DROP_PP = 0.2
MIN_GAIN_PP = 2.5
Setting = tuple[float, float, float]  # (min_tilt, max_tilt, min_elongation)


def main_axis(mask: np.ndarray) -> tuple[float, float]:
    """(tilt in degrees, axis ratio) of a boolean mask's main axis; y points down, so a positive
    tilt is clockwise on screen. (0, 1) when the mask is too small to say."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 10:
        return 0.0, 1.0
    x, y = xs - xs.mean(), ys - ys.mean()
    cxx, cyy, cxy = float((x * x).mean()), float((y * y).mean()), float((x * y).mean())
    tilt = 0.5 * float(np.degrees(np.arctan2(2 * cxy, cxx - cyy)))
    half, det = (cxx + cyy) / 2, cxx * cyy - cxy * cxy
    spread = float(np.sqrt(max(half * half - det, 0.0)))
    return tilt, float(np.sqrt((half + spread) / max(half - spread, 1e-9)))


def deskewed(gray: np.ndarray, setting: Setting) -> np.ndarray:
    """``gray`` with its item rotated flat when the setting says so (else unchanged)."""
    min_tilt, max_tilt, min_elongation = setting
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return gray
    # The item as canonicalize finds it, bright on dark.
    gray, level = pp.bright_on_dark(gray)
    step = max(1, max(gray.shape) // 200)  # the axis of a 200 px view is as good
    mask = pp.item_mask(gray, level, pp.PreprocessConfig())
    tilt, elongation = main_axis(mask[::step, ::step])
    if not (min_tilt <= abs(tilt) <= max_tilt and elongation >= min_elongation):
        return gray
    # PIL turns counter-clockwise on screen: a clockwise tilt (> 0) is undone by +tilt.
    turned = Image.fromarray(np.ascontiguousarray(gray)).rotate(
        tilt, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=level
    )
    return np.asarray(turned)


@contextlib.contextmanager
def deskew_setting(setting: Setting | None) -> Iterator[None]:
    """``canonicalize`` with a deskew step first (None: as shipped), for the block."""
    saved = pp.canonicalize
    try:
        if setting is not None:
            pp.canonicalize = lambda gray, config=None: saved(deskewed(gray, setting), config)  # type: ignore[assignment]
        yield
    finally:
        pp.canonicalize = saved  # type: ignore[assignment]


def fashion_mnist_tilts(model: Path) -> dict[str, Any]:
    """How tilted Fashion-MNIST's own elongated items are (training images): the deskew must
    leave those poses alone."""
    from product_classifier.constants import CLASS_NAMES
    from product_classifier.data.split import fashion_mnist_split
    from product_classifier.inference.model_card import default_card_path, load_model_card

    card = load_model_card(default_card_path(model))
    split = fashion_mnist_split(card.get("config", {}).get("data"))
    images, labels = split.images[split.train_idx], split.labels[split.train_idx]
    out: dict[str, Any] = {}
    for k, name in enumerate(CLASS_NAMES):
        axes = np.array([main_axis(im > 0.15 * im.max()) for im in images[labels == k][:2000]])
        tilts = np.abs(axes[axes[:, 1] >= 1.8, 0])
        out[name] = {
            "share_elongated": float((axes[:, 1] >= 1.8).mean()),
            "tilt_p50_p95": [float(v) for v in np.percentile(tilts, [50, 95])]
            if len(tilts)
            else None,
        }
    return out


def main() -> None:
    from picture_sweep import best_within, load, parse_args, write_evidence

    args = parse_args(__doc__, "docs/evidence/deskew-sweep.json")
    started = time.monotonic()
    data = load(args)
    tilts = fashion_mnist_tilts(args.model)
    print(f"Fashion-MNIST tilts (elongated items): {json.dumps(tilts)}", flush=True)

    def score(setting: Setting | None) -> dict[str, Any]:
        names = ("min_tilt", "max_tilt", "min_elongation")
        with deskew_setting(setting):
            row = {
                "setting": None if setting is None else dict(zip(names, setting, strict=True)),
                **data.score(),
            }
        print(
            f"{setting}: dev balanced {row['dev_balanced_accuracy']:.4f}, "
            f"renders {row['validation_render_accuracy']:.4f}",
            flush=True,
        )
        return row

    off = score(None)
    rows = [score(s) for s in itertools.product(MIN_TILTS, MAX_TILTS, MIN_ELONGATIONS)]
    best = best_within(off, rows, MAX_RENDER_DROP_PP)
    gain_pp = (
        None
        if best is None
        else 100 * (best["dev_balanced_accuracy"] - off["dev_balanced_accuracy"])
    )
    result = {
        "command": "scripts/deskew_sweep.py",
        "model": f"{args.model.name} (the served cascade, its own answers)",
        "rule": f"best dev balanced accuracy among settings whose validation-render accuracy is "
        f"within {MAX_RENDER_DROP_PP} pp of no deskew; adopted if it gains >= {MIN_GAIN_PP} pp",
        "fashion_mnist_tilts": tilts,
        "off": off,
        "rows": rows,
        "best": None if best is None else best["setting"],
        "gain_pp": gain_pp,
        "adopted": gain_pp is not None and gain_pp >= MIN_GAIN_PP,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_evidence(args, result)
    print(f"best {result['best']} gain {gain_pp} pp, adopted {result['adopted']}; wrote {args.out}")


if __name__ == "__main__":
    main()

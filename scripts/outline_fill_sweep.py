"""Choose how ``canonicalize`` fills what an outline drawing encloses, on DEV data; write evidence.

    flock /tmp/pc-heavy.lock timeout 600 .venv/bin/python scripts/outline_fill_sweep.py \
        [--dev data/real-pictures/dev] [--n 1500] [--out docs/evidence/outline-fill.json]

Outline icons (a garment's contour drawn in strokes) reach the model as a bright contour around
a dark inside; ``preprocessing.fill_enclosed`` raises the enclosed background to a flat grey so
they look like Fashion-MNIST's filled silhouettes. This sweep scores the served default (the
cascade) with the fill off and on a grid of (background level, fill grey), on

- the real-picture **dev** part: balanced accuracy over the ten categories (what the fill is
  for) and the out-of-scope AUROC (how well confidence still tells non-products apart);
- ``--n`` renders of Fashion-MNIST **validation** images as shop photos
  (``evaluation/photos.py``): the fill must not cost ordinary photos accuracy.

The rule: the setting with the best dev balanced accuracy whose validation-render accuracy is
within 0.2 pp of the fill switched off. No test picture or test image is read.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

from product_classifier import preprocessing as pp

LEVELS = (0.2, 0.3, 0.4)
FILLS = (0.45, 0.55, 0.65)
MAX_RENDER_DROP_PP = 0.2


@contextlib.contextmanager
def fill_setting(setting: tuple[float, float] | None) -> Iterator[None]:
    """canonicalize with the fill off (None) or at (level, fill), for the block."""
    saved = pp._HOLE_LEVEL, pp._HOLE_FILL, pp.fill_enclosed
    try:
        if setting is None:
            pp.fill_enclosed = lambda image, level=None, fill=None: image  # type: ignore[assignment]
        else:
            pp._HOLE_LEVEL, pp._HOLE_FILL = setting
        yield
    finally:
        pp._HOLE_LEVEL, pp._HOLE_FILL, pp.fill_enclosed = saved


def main() -> None:
    from picture_sweep import best_within, load, parse_args, write_evidence

    args = parse_args(__doc__, "docs/evidence/outline-fill.json")
    started = time.monotonic()
    data = load(args)

    def score(setting: tuple[float, float] | None) -> dict[str, Any]:
        with fill_setting(setting):
            row = {
                "level": None if setting is None else setting[0],
                "fill": None if setting is None else setting[1],
                **data.score(),
            }
        print(
            f"{setting}: dev balanced {row['dev_balanced_accuracy']:.4f}, "
            f"AUROC {row['dev_out_of_scope_auroc']:.3f}, "
            f"renders {row['validation_render_accuracy']:.4f}",
            flush=True,
        )
        return row

    off = score(None)
    rows = [score(setting) for setting in itertools.product(LEVELS, FILLS)]
    best = best_within(off, rows, MAX_RENDER_DROP_PP)
    result = {
        "command": "scripts/outline_fill_sweep.py",
        "model": f"{args.model.name} (the served cascade)",
        "rule": "best dev balanced accuracy among settings whose validation-render accuracy is "
        f"within {MAX_RENDER_DROP_PP} pp of the fill switched off",
        "off": off,
        "rows": rows,
        "chosen": None if best is None else {"level": best["level"], "fill": best["fill"]},
        "current": {"level": pp._HOLE_LEVEL, "fill": pp._HOLE_FILL},
        "seconds": round(time.monotonic() - started, 1),
    }
    write_evidence(args, result)
    print(f"chosen {result['chosen']} (current {result['current']}); wrote {args.out}")


if __name__ == "__main__":
    main()

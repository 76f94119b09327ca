"""Sweep the photo preprocessing constants on renders of VALIDATION images; write JSON evidence.

    flock /tmp/pc-heavy.lock timeout 600 .venv/bin/python scripts/preprocessing_sweep.py \
        [--n 2000] [--seed 0] [--model artifacts/model.int8.onnx] [--report-test] \
        [--out docs/evidence/held-out-2026-12-07/preprocessing_sweep.json]

The constants in ``preprocessing.py`` that turn a large shop photo into a 28x28 Fashion-MNIST
image (foreground threshold and fraction, crop margin, the working scale the item's peak is
measured at, the unsharp mask's amount and sigma) are varied one at a time around their current
values. Each setting is scored on ``--n`` validation images of the released model's card split
rendered as shop photos (``evaluation/photos.py``, seed ``--seed``), classified by the served
default (the cascade of ``--model``). Each photo is decoded once; only ``canonicalize`` changes.

The rule: a setting replaces the current one only if its validation accuracy beats it by more
than twice the paired standard error of the difference (the same photos score both, so only
the photos they disagree on count). ``--report-test`` then scores the current setting (and the
winner, if any) on test renders of the same size: figures to report, never to choose with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier import preprocessing as pp
from product_classifier.evaluation.metrics import paired_difference
from product_classifier.evaluation.photos import (
    build_photo_set,
    photo_subset,
    raw_image_classifier,
    split_images,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs/evidence/held-out-2026-12-07/preprocessing_sweep.json"

# Module-level constants of preprocessing.py (read at call time, so patching them for one
# setting is enough) and PreprocessConfig's fields.
MODULE_KNOBS = {
    "work_scale": "_WORK_SCALE",
    "sharpen_amount": "_SHARPEN_AMOUNT",
    "sharpen_sigma": "_SHARPEN_SIGMA",
}
CONFIG_KNOBS = ("foreground_threshold", "foreground_fraction", "crop_margin")
# Values tried for each knob, one knob at a time (the current value is the baseline row).
GRID: dict[str, tuple[float, ...]] = {
    "foreground_fraction": (0.05, 0.1, 0.2, 0.25, 0.3),
    "foreground_threshold": (4, 8, 16, 24),
    "crop_margin": (0.02, 0.05),
    "work_scale": (1, 2, 8),
    "sharpen_amount": (0.0, 0.5, 1.0, 2.0, 2.5),
    "sharpen_sigma": (0.35, 0.75, 1.0),
}


def current() -> dict[str, float]:
    """The constants preprocessing.py has now."""
    config = pp.PreprocessConfig()
    values: dict[str, float] = {k: getattr(config, k) for k in CONFIG_KNOBS}
    values.update({k: getattr(pp, name) for k, name in MODULE_KNOBS.items()})
    return values


@contextlib.contextmanager
def patched(setting: dict[str, float]) -> Iterator[pp.PreprocessConfig]:
    """preprocessing's module constants set to ``setting`` for the block; restored after."""
    saved = {name: getattr(pp, name) for name in MODULE_KNOBS.values()}
    try:
        for knob, name in MODULE_KNOBS.items():
            value = setting[knob]
            setattr(pp, name, int(value) if knob == "work_scale" else float(value))
        yield pp.PreprocessConfig(
            foreground_threshold=int(setting["foreground_threshold"]),
            foreground_fraction=float(setting["foreground_fraction"]),
            crop_margin=float(setting["crop_margin"]),
        )
    finally:
        for name, value in saved.items():
            setattr(pp, name, value)


def decoded(datas: list[bytes]) -> list[np.ndarray]:
    """Each photo decoded to grayscale once (decoding does not depend on the constants)."""
    return [pp.to_grayscale(pp.decode_image(data)) for data in datas]


def correct(
    grays: list[np.ndarray],
    labels: np.ndarray,
    setting: dict[str, float],
    classify: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    with patched(setting) as config:
        canon = np.stack([pp.canonicalize(gray, config) for gray in grays])
    return np.asarray(classify(canon) == labels)


def rendered(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int, split: str
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(raw images, labels, decoded grayscale photos) of ``n`` renders of ``images``."""
    photos = build_photo_set(images, labels, n=n, seed=seed, split=split)
    index = [p.index for p in photos]
    return images[index], labels[index], decoded([p.data for p in photos])


def score(
    part: tuple[np.ndarray, np.ndarray, list[np.ndarray]],
    settings: dict[str, dict[str, float]],
    classify: Callable[[np.ndarray], np.ndarray],
) -> dict[str, float]:
    raw, y, grays = part
    out = {"images": len(y), "raw_accuracy": float((classify(raw) == y).mean())}
    oks = {name: correct(grays, y, s, classify) for name, s in settings.items()}
    out.update({f"{name}_accuracy": float(ok.mean()) for name, ok in oks.items()})
    if "winner" in oks:
        diff = paired_difference(oks["winner"], oks["current"])
        out.update({f"winner_vs_current_{k}": v for k, v in diff.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts/model.int8.onnx")
    parser.add_argument("--no-cascade", action="store_true", help="The model file alone.")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-test", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.monotonic()
    classify = raw_image_classifier(args.model, cascade=not args.no_cascade)

    images, labels = split_images("val", args.model)
    sweep_idx = photo_subset(labels, args.n, args.seed)
    raw, y, grays = rendered(images[sweep_idx], labels[sweep_idx], args.n, args.seed, "val")
    raw_ok = classify(raw) == y
    base = current()
    base_ok = correct(grays, y, base, classify)
    print(f"raw {raw_ok.mean():.4f}  current {base_ok.mean():.4f}  {base}", flush=True)

    rows: list[dict[str, Any]] = []
    for knob, values in GRID.items():
        for value in values:
            if value == base[knob]:
                continue
            ok = correct(grays, y, {**base, knob: value}, classify)
            row = {
                "knob": knob,
                "value": value,
                "accuracy": float(ok.mean()),
                **paired_difference(ok, base_ok),
            }
            row["clear_gain"] = row["delta_pp"] > 2 * row["se_pp"]
            rows.append(row)
            print(
                f"{knob}={value}: {ok.mean():.4f} ({row['delta_pp']:+.2f} ± {row['se_pp']:.2f} pp)",
                flush=True,
            )

    # Many settings were tried on the same photos, so the best one's gain is biased upwards:
    # a candidate must also beat the current setting on the validation images left out of the
    # sweep, rendered afresh, before it is called a gain.
    best = max(rows, key=lambda r: r["delta_pp"])
    candidate = {**base, best["knob"]: best["value"]}
    rest = np.setdiff1d(np.arange(len(labels)), sweep_idx)
    settings = {"current": base, "winner": candidate}
    confirm = score(
        rendered(images[rest], labels[rest], len(rest), args.seed, "val"), settings, classify
    )
    confirmed = bool(best["clear_gain"]) and (
        confirm["winner_vs_current_delta_pp"] > 2 * confirm["winner_vs_current_se_pp"]
    )
    print(f"confirmation on {len(rest)} other validation renders: {confirm}", flush=True)
    command = f"scripts/preprocessing_sweep.py --n {args.n} --seed {args.seed}"
    command += (" --no-cascade" if args.no_cascade else "") + (
        " --report-test" if args.report_test else ""
    )
    result: dict[str, Any] = {
        "command": command,
        "model": args.model.name + ("" if args.no_cascade else " (the served cascade, its card)"),
        "chosen_on": f"{args.n} validation images of the card's split rendered as shop photos "
        f"(seed {args.seed}); confirmed on the other {len(rest)} validation images",
        "rule": "the best setting replaces the current one only if its validation accuracy is "
        "higher by more than twice the paired standard error, on the sweep's photos and again "
        "on the validation photos left out of the sweep",
        "current": base,
        "validation": {
            "raw_accuracy": float(raw_ok.mean()),
            "current_accuracy": float(base_ok.mean()),
            "rows": rows,
        },
        "best": {"setting": candidate, **best},
        "confirmation": confirm,
        "decision": "change" if confirmed else "keep the current constants",
    }
    if args.report_test:
        test_images, test_labels = split_images("test", args.model)
        test = rendered(test_images, test_labels, args.n, args.seed, "test")
        report = score(test, settings if confirmed else {"current": base}, classify)
        result["test_report"] = {"rendered": f"test renders (seed {args.seed})", **report}
        print("test (report only):", report, flush=True)
    from product_classifier.provenance import git_sha, sha256_file

    result["preprocessing_py_sha256"] = sha256_file(Path(pp.__file__))
    result["git_commit"] = git_sha()
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"decision: {result['decision']} (best: {best['knob']}={best['value']} "
        f"{best['delta_pp']:+.2f} ± {best['se_pp']:.2f} pp); wrote {args.out}"
    )


if __name__ == "__main__":
    main()

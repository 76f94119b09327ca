"""Decide flip test-time augmentation on the VALIDATION split; write JSON evidence.

    flock /tmp/pc-heavy.lock timeout 600 .venv/bin/python scripts/flip_tta_decision.py \
        [--out docs/evidence/held-out-2026-12-07/flip_tta.json]

Flip-TTA averages a model's logits for an image and its mirror image (what
``export --tta-flip`` puts into the graph). Here it is computed from the released ONNX files
directly, on the 6,000 validation images of the card's split: the FP32 release, its INT8
variant, the cascade's first stage, and the served cascade (both stages averaged, the card's
threshold). The rule: TTA doubles the model's CPU per image, so it is adopted only if it raises
validation accuracy by more than twice the paired standard error without lowering the lowest
per-class precision or recall. No test image is read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.constants import CLASS_NAMES
from product_classifier.data.split import fashion_mnist_split
from product_classifier.evaluation.evaluate import onnx_logits
from product_classifier.evaluation.metrics import compute_metrics, paired_difference
from product_classifier.export.cascade import cascade_predictions
from product_classifier.inference.model_card import load_model_card
from product_classifier.inference.predictor import softmax

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs/evidence/held-out-2026-12-07/flip_tta.json"
DEFAULT_ARTIFACTS = ROOT / "artifacts"


def logits(model: Path, images: np.ndarray, tta: bool) -> np.ndarray:
    plain = onnx_logits(model, images)
    if not tta:
        return plain
    return 0.5 * (plain + onnx_logits(model, np.ascontiguousarray(images[:, :, ::-1])))


def summary(labels: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    m = compute_metrics(labels, pred, CLASS_NAMES)
    weakest = min(m.per_class, key=lambda c: min(c.precision, c.recall))
    return {
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "min_precision": m.min_precision,
        "min_recall": m.min_recall,
        "weakest_class": weakest.name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.monotonic()
    card = load_model_card(args.artifacts / "model_card.json")
    split = fashion_mnist_split(card.get("config", {}).get("data"))
    images, labels = split.val_images, split.val_labels
    models = {
        "fp32": args.artifacts / card["file"],
        "int8": args.artifacts / card["variants"]["int8"]["file"],
        "first_stage": args.artifacts / card["cascade"]["first"]["file"],
    }
    threshold = float(card["cascade"]["threshold"])
    rows: dict[str, dict[str, Any]] = {}
    for tta in (False, True):
        out = {name: logits(path, images, tta) for name, path in models.items()}
        preds = {name: value.argmax(axis=1) for name, value in out.items()}
        first, second = softmax(out["first_stage"]), softmax(out["int8"])
        preds["cascade"] = cascade_predictions(first, second, threshold)
        for name, pred in preds.items():
            row = summary(labels, pred)
            if name == "cascade":
                row["escalated"] = float(np.mean(first.max(axis=1) < threshold))
            rows.setdefault(name, {})["tta" if tta else "plain"] = row
            rows[name][f"_ok_{tta}"] = pred == labels
    decisions = {}
    for name, row in rows.items():
        diff = paired_difference(row.pop("_ok_True"), row.pop("_ok_False"))
        row["tta_minus_plain"] = diff
        plain, tta = row["plain"], row["tta"]
        adopt = (
            diff["delta_pp"] > 2 * diff["se_pp"]
            and tta["min_precision"] >= plain["min_precision"]
            and tta["min_recall"] >= plain["min_recall"]
        )
        decisions[name] = "adopt flip-TTA" if adopt else "no TTA"
        print(f"{name}: plain {plain['accuracy']:.4f} (min P {plain['min_precision']:.3f}, "
              f"min R {plain['min_recall']:.3f}); TTA {tta['accuracy']:.4f} (min P "
              f"{tta['min_precision']:.3f}, min R {tta['min_recall']:.3f}); "
              f"{diff['delta_pp']:+.2f} ± {diff['se_pp']:.2f} pp -> {decisions[name]}")  # fmt: skip
    result = {
        "command": "scripts/flip_tta_decision.py"
        + (
            "" if args.artifacts == DEFAULT_ARTIFACTS else f" --artifacts <{card['model_version']}>"
        ),
        "chosen_on": f"{len(labels)} Fashion-MNIST validation images (the card's split: "
        f"val_fraction {card['config']['data']['val_fraction']}, split_seed "
        f"{card['config']['data']['split_seed']}); no test image is read",
        "models": {name: path.name for name, path in models.items()}
        | {"cascade": f"first_stage -> int8 at threshold {threshold}"},
        "model_version": card["model_version"],
        "rule": "adopt flip-TTA only if it raises validation accuracy by more than twice the "
        "paired standard error without lowering the lowest per-class precision or recall "
        "(it doubles the model's CPU per image)",
        "rows": rows,
        "decisions": decisions,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

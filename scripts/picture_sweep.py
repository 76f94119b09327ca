"""What the preprocessing sweeps on DEV data share (``outline_fill_sweep.py``, ``deskew_sweep.py``).

A sweep changes ``canonicalize`` for a block and scores the served default's own answers (the
pictures' per-category bias is fitted after preprocessing choices, so it takes no part) on

- the real-picture **dev** part: balanced accuracy over the ten categories, per category, and
  the out-of-scope AUROC;
- ``--n`` renders of Fashion-MNIST **validation** images as shop photos
  (``evaluation/photos.py``), decoded once: a change must not cost ordinary photos accuracy.

No test picture or test image is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier import preprocessing as pp

ROOT = Path(__file__).resolve().parents[1]


def parse_args(doc: str, out: str) -> argparse.Namespace:
    """The sweeps' common options; ``out``: the evidence file, relative to the repository."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts/model.int8.onnx")
    parser.add_argument("--dev", type=Path, default=ROOT / "data/real-pictures/dev")
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / out)
    return parser.parse_args()


@dataclasses.dataclass
class SweepData:
    model: Any  # the loaded cascade (inference.model_card.LoadedModel)
    policy: Any  # its review policy without the pictures' part
    classify: Callable[[np.ndarray], np.ndarray]  # canonical images -> its own answers
    grays: list[np.ndarray]  # the renders, decoded once
    truth: np.ndarray
    dev: Path

    def score(self) -> dict[str, Any]:
        """Dev and render figures with ``canonicalize`` as it is now (inside a sweep's block)."""
        from product_classifier.export.review import labelled_folder, labelled_metrics

        names = self.model.predictor.class_names
        dev = labelled_metrics(labelled_folder(self.model.predictor, self.dev), self.policy, names)
        canon = np.stack([pp.canonicalize(gray) for gray in self.grays])
        return {
            "dev_balanced_accuracy": dev["balanced_accuracy"],
            "dev_per_class": dev["per_class"],
            "dev_out_of_scope_auroc": dev["out_of_scope_auroc"],
            "validation_render_accuracy": float((self.classify(canon) == self.truth).mean()),
        }


def load(args: argparse.Namespace) -> SweepData:
    from product_classifier.evaluation.photos import (
        build_photo_set,
        photo_subset,
        raw_image_classifier,
        split_images,
    )
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.inference.review import review_policy

    model = load_verified_model(args.model, cascade=True)
    images, labels = split_images("val", args.model)
    subset = photo_subset(labels, args.n, args.seed)
    photos = build_photo_set(images[subset], labels[subset], n=args.n, seed=args.seed, split="val")
    return SweepData(
        model=model,
        policy=dataclasses.replace(review_policy(model.card), pictures=None),
        classify=raw_image_classifier(args.model, cascade=True),
        grays=[pp.to_grayscale(pp.decode_image(p.data)) for p in photos],
        truth=np.array([p.label for p in photos]),
        dev=args.dev,
    )


def best_within(off: dict[str, Any], rows: list[dict[str, Any]], max_drop_pp: float) -> Any:
    """The row with the best dev balanced accuracy among those whose render accuracy is within
    ``max_drop_pp`` of ``off`` (the preprocessing as shipped); None if there is none."""
    floor = off["validation_render_accuracy"] - max_drop_pp / 100
    eligible = [r for r in rows if r["validation_render_accuracy"] >= floor]
    return max(eligible, key=lambda r: r["dev_balanced_accuracy"]) if eligible else None


def write_evidence(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The sweep's figures, with where they were chosen, as JSON at ``--out``."""
    result["chosen_on"] = (
        f"the real-picture dev part ({args.dev.name}) and {args.n} Fashion-MNIST validation "
        f"images rendered as shop photos (seed {args.seed}); no test data"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

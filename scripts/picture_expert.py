"""Would a picture expert help? Score a fine-tuned checkpoint on real pictures, on DEV data only.

    flock /tmp/pc-heavy.lock timeout 600 .venv/bin/python scripts/picture_expert.py \
        runs/robust-icons/best.pt [--dev data/real-pictures/dev] \
        [--out docs/evidence/icons-cpu-2026-12-07/picture-expert.json]

A checkpoint fine-tuned for pictures (``configs/robust-icons.yaml``) could serve real pictures
beside the released cascade, which keeps Fashion-MNIST's own 28x28 images. This script measures
the three ways it could, each on the real-picture **dev** part and on 2,000 Fashion-MNIST
**validation** images rendered as shop photos (``export/review.validation_renders``: what the
pictures' answers must not make worse), never on a test part:

1. **replace**: the expert alone answers pictures;
2. **ensemble**: the geometric mean of the cascade's and the expert's probabilities, with the
   expert's weight ``w`` (``w = 0`` is the release as served, ``w = 1`` the expert alone).
   For each ``w`` the pictures' review policy is chosen exactly as ``product-classifier
   review`` chooses it (``evaluation.review.choose_picture_policy``: temperature, per-category
   bias with its design-family cross-validation and render bar, threshold);
3. **second opinion**: the release answers with the card's pictures' policy, and a picture is
   also flagged when the expert's confidence is below ``t``, chosen by the rule
   ``product-classifier review`` applies (``evaluation.review.choose_second_opinion``).

Prints a table and writes the figures as JSON. Takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _geometric(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    from product_classifier.inference.predictor import softmax

    return softmax((1 - weight) * np.log(a + 1e-12) + weight * np.log(b + 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dev", type=Path, default=ROOT / "data/real-pictures/dev")
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts/model.int8.onnx")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from product_classifier.evaluation.review import (
        LabelledProbs,
        balanced_accuracy,
        choose_picture_policy,
        choose_second_opinion,
        review_metrics,
    )
    from product_classifier.export.review import labelled_folder, validation_renders
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.inference.predictor import softmax
    from product_classifier.inference.review import review_policy
    from product_classifier.training.trainer import model_from_checkpoint

    started = time.time()
    served = load_verified_model(args.model, cascade=True)
    network, _ = model_from_checkpoint(args.checkpoint)
    network.eval()

    class Expert:  # the predictor interface labelled_folder and validation_renders need
        spec = served.predictor.spec
        class_names = served.predictor.class_names

        @staticmethod
        @torch.no_grad()
        def predict_proba(batch: np.ndarray) -> np.ndarray:
            return softmax(network(torch.from_numpy(batch)).numpy())

    dev_release = labelled_folder(served.predictor, args.dev)
    dev_expert = labelled_folder(Expert, args.dev)
    renders_release = validation_renders(served.predictor, served.card)
    renders_expert = validation_renders(Expert, served.card)
    inside = dev_release.in_scope
    labels = dev_release.labels

    def per_class(pred: np.ndarray) -> list[float]:
        return [float((pred[labels == k] == k).mean()) for k in range(len(Expert.class_names))]

    rows: list[dict[str, Any]] = []
    for weight in WEIGHTS:
        dev = LabelledProbs(
            _geometric(dev_release.probs, dev_expert.probs, weight), labels, dev_release.groups
        )
        renders = LabelledProbs(
            _geometric(renders_release.probs, renders_expert.probs, weight),
            renders_release.labels,
        )
        policy, evidence = choose_picture_policy(dev, renders=renders)
        answers = policy.calibrate(dev.probs).argmax(axis=1)
        flags = review_metrics(policy, dev)
        on_renders = review_metrics(policy, renders)
        rows.append(
            {
                "expert_weight": weight,
                "dev_balanced_accuracy_raw": balanced_accuracy(
                    dev.probs[inside].argmax(axis=1), labels[inside]
                ),
                "dev_balanced_accuracy": balanced_accuracy(answers[inside], labels[inside]),
                "dev_per_class": per_class(answers),
                "policy": policy.to_dict(),
                "bias_penalty": evidence.get("bias_penalty"),
                "dev_review_on_wrong": flags["review_on_wrong"],
                "dev_review_on_right": flags["review_on_right"],
                "dev_out_of_scope_flagged": flags["out_of_scope_flagged"],
                "dev_out_of_scope_auroc": flags["out_of_scope_auroc"],
                "renders_accuracy": on_renders["accuracy"],
                "renders_flagged": on_renders["review_rate"],
            }
        )
        r = rows[-1]
        print(
            f"w {weight:.2f}: dev balanced {r['dev_balanced_accuracy']:.3f} "
            f"(raw {r['dev_balanced_accuracy_raw']:.3f})  flagged: wrong "
            f"{r['dev_review_on_wrong']:.3f} right {r['dev_review_on_right']:.3f} out of scope "
            f"{r['dev_out_of_scope_flagged']:.3f} (AUROC {r['dev_out_of_scope_auroc']:.3f})  "
            f"renders {r['renders_accuracy']:.4f}, flagged {r['renders_flagged']:.3f}",
            flush=True,
        )

    # Second opinion: the card's own pictures' policy answers, the expert only adds flags; its
    # threshold chosen by the rule `product-classifier review` applies.
    policy = review_policy(served.card).pictures
    assert policy is not None, "the card has no pictures' policy (run product-classifier review)"
    policy = replace(policy, second_opinion=0.0)
    chosen, opinion = choose_second_opinion(
        policy,
        LabelledProbs(dev_release.probs, labels, opinion=dev_expert.probs.max(axis=1)),
        LabelledProbs(
            renders_release.probs, renders_release.labels, opinion=renders_expert.probs.max(axis=1)
        ),
    )
    for o in opinion["second_opinion_grid"]:
        print(
            f"second opinion below {o['second_opinion']:.2f}: J {o['youden_j_on_passed']:+.3f}  "
            f"flagged wrong {o['review_on_wrong']:.3f} right {o['review_on_right']:.3f} out of "
            f"scope {o['out_of_scope_flagged']:.3f}  renders flagged {o['renders_flagged']:.3f}"
            f"{'' if o['eligible'] else ' (renders: not eligible)'}"
            f"{'  <' if o['second_opinion'] == chosen else ''}",
            flush=True,
        )
    print(f"chosen: {chosen or 'no second opinion'}")

    result = {
        "command": "python scripts/picture_expert.py " + str(args.checkpoint),
        "checkpoint": str(args.checkpoint),
        "served": served.predictor.model_version,
        "dev": {
            "in_scope": int(inside.sum()),
            "out_of_scope": int((~inside).sum()),
            "release_per_class_raw": per_class(dev_release.probs.argmax(axis=1)),
            "expert_per_class_raw": per_class(dev_expert.probs.argmax(axis=1)),
        },
        "renders": len(renders_release.labels),
        "ensembles": rows,
        "second_opinion": {"chosen": chosen, **opinion},
        "test_read": False,
        "seconds": round(time.time() - started, 1),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

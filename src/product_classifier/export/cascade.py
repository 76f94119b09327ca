"""Build the serving cascade: a distilled student in front of the released INT8 model.

``product-classifier cascade runs/student/best.pt`` exports the student to ONNX, quantises it
to INT8, picks the confidence threshold on the validation split and records everything in the
model card's ``cascade`` section, where ``product-classifier serve`` finds it.

The threshold rule, on validation images that neither model trained on: the smallest grid
value whose accuracy and lowest per-class precision and recall are all at least the released
model's own. The test set is only read afterwards, by the release gate (the spec's bars, and at
most ``MAX_ACCURACY_DROP_PP`` below the released model).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.constants import CLASS_NAMES
from product_classifier.evaluation.metrics import ClassificationMetrics, compute_metrics

FIRST_STAGE_FILE = "model.student.int8.onnx"
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)
MAX_ACCURACY_DROP_PP = 0.1
MIN_ACCURACY = 0.95
MIN_MACRO_F1 = 0.95


class CascadeError(RuntimeError):
    """The cascade cannot be built or does not pass the release gate."""


def split_mismatch(data_cfg: dict[str, Any], card: dict[str, Any]) -> str | None:
    """Why a checkpoint trained with ``data_cfg`` cannot be scored on the released model's
    validation split (it saw some of those images), or None when it can."""
    released = card.get("config", {}).get("data", {})
    split = (data_cfg["val_fraction"], data_cfg["split_seed"])
    if released and split != (released["val_fraction"], released["split_seed"]):
        return f"validation split {split} differs from the released model's"
    return None


def cascade_predictions(first: np.ndarray, second: np.ndarray, threshold: float) -> np.ndarray:
    """Class ids the cascade predicts, from both stages' probabilities for the same images."""
    unsure = first.max(axis=1) < threshold
    return np.where(unsure, second.argmax(axis=1), first.argmax(axis=1))


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    grid: list[dict[str, float]]
    reference: dict[str, float]

    @property
    def escalated(self) -> float:
        return next(row["escalated"] for row in self.grid if row["threshold"] == self.threshold)


def _summary(m: ClassificationMetrics) -> dict[str, float]:
    return {
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "min_precision": m.min_precision,
        "min_recall": m.min_recall,
    }


def choose_threshold(
    first: np.ndarray,
    second: np.ndarray,
    labels: np.ndarray,
    grid: tuple[float, ...] = THRESHOLD_GRID,
) -> ThresholdChoice:
    """The cheapest threshold that matches the second stage on these (validation) images."""
    reference = compute_metrics(labels, second.argmax(axis=1), CLASS_NAMES)
    rows = []
    chosen: float | None = None
    for threshold in sorted(grid):
        m = compute_metrics(labels, cascade_predictions(first, second, threshold), CLASS_NAMES)
        escalated = float(np.mean(first.max(axis=1) < threshold))
        rows.append({"threshold": threshold, "escalated": escalated, **_summary(m)})
        matches = (
            m.accuracy >= reference.accuracy
            and m.min_precision >= reference.min_precision
            and m.min_recall >= reference.min_recall
        )
        if chosen is None and matches:
            chosen = threshold
    if chosen is None:
        raise CascadeError(
            "no threshold in the grid matches the released model on validation data; "
            "the first stage is too weak to put in front of it"
        )
    return ThresholdChoice(chosen, rows, _summary(reference))


def gate(cascade: ClassificationMetrics, second: ClassificationMetrics) -> list[str]:
    """Problems that block the cascade on the test set (empty: it may ship)."""
    problems = []
    if cascade.accuracy < MIN_ACCURACY:
        problems.append(f"accuracy {cascade.accuracy:.4f} < {MIN_ACCURACY}")
    if cascade.macro_f1 < MIN_MACRO_F1:
        problems.append(f"macro-F1 {cascade.macro_f1:.4f} < {MIN_MACRO_F1}")
    for c in cascade.failing_classes():
        problems.append(f"class {c.name!r}: precision {c.precision:.3f} / recall {c.recall:.3f}")
    drop_pp = (second.accuracy - cascade.accuracy) * 100.0
    if drop_pp > MAX_ACCURACY_DROP_PP + 1e-9:
        problems.append(f"{drop_pp:.2f} pp below the released model (max {MAX_ACCURACY_DROP_PP})")
    return problems


def _probabilities(model_path: Path, images: np.ndarray) -> np.ndarray:
    from product_classifier.evaluation.evaluate import onnx_logits
    from product_classifier.inference.predictor import softmax

    return softmax(onnx_logits(model_path, images))


def build_cascade(
    first_checkpoint: Path,
    *,
    second: Path = Path("artifacts/model.int8.onnx"),
    card_path: Path | None = None,
    data_dir: Path | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Export + quantise the student, choose the threshold, gate, record. Returns the entry."""
    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.data.split import fashion_mnist_split
    from product_classifier.export.onnx_export import export_onnx
    from product_classifier.export.quantize import publish, quantize_model
    from product_classifier.inference.model_card import load_model_card
    from product_classifier.provenance import utc_now
    from product_classifier.training.trainer import model_from_checkpoint

    card_path = card_path or second.with_name("model_card.json")
    card = load_model_card(card_path)
    model, ckpt = model_from_checkpoint(first_checkpoint)
    data_cfg = ckpt["config"]["data"]
    problem = split_mismatch(data_cfg, card)
    if problem:
        raise CascadeError(
            f"the student's {problem}; choosing a threshold needs images that neither model "
            "trained on"
        )

    out = second.with_name(FIRST_STAGE_FILE)
    # quantize_model appends "+int8" to the exported file's version (once, not twice).
    version = f"{ckpt['config']['name']}-{ckpt['saved_at'][:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "first.onnx", model_version=version)
        candidate = out.with_name(out.name + ".candidate")
        quantized = quantize_model(fp32, candidate, data_dir=data_dir)

    val = fashion_mnist_split(data_cfg, data_dir)
    test_images, test_labels = load_fashion_mnist("test", data_dir=data_dir)
    val_first = _probabilities(candidate, val.val_images)
    val_second = _probabilities(second, val.val_images)
    choice = choose_threshold(val_first, val_second, val.val_labels)

    test_first = _probabilities(candidate, test_images)
    test_second = _probabilities(second, test_images)
    predictions = cascade_predictions(test_first, test_second, choice.threshold)
    metrics = compute_metrics(test_labels, predictions, CLASS_NAMES)
    second_metrics = compute_metrics(test_labels, test_second.argmax(axis=1), CLASS_NAMES)
    first_metrics = compute_metrics(test_labels, test_first.argmax(axis=1), CLASS_NAMES)
    problems = gate(metrics, second_metrics)
    if problems:
        candidate.unlink(missing_ok=True)
        raise CascadeError("the cascade fails the release gate: " + "; ".join(problems))

    published = publish(candidate, out, write)
    entry: dict[str, Any] = {
        "second": second.name,
        "threshold": choice.threshold,
        "rule": "smallest grid threshold whose validation accuracy and lowest per-class "
        "precision and recall are at least the second stage's",
        "first": {
            **published,
            "model_version": quantized.model_version,
            "architecture": ckpt["model"],
            "parameters": ckpt["parameters"],
            "teacher": ckpt.get("teacher"),
            "checkpoint_saved_at": ckpt.get("saved_at"),
            "quantization": quantized.description(),
            "test_metrics_alone": _summary(first_metrics),
        },
        "validation": {
            "images": len(val.val_idx),
            "second_stage": choice.reference,
            "grid": choice.grid,
        },
        "escalated_fraction": {
            "validation": next(
                r["escalated"] for r in choice.grid if r["threshold"] == choice.threshold
            ),
            "test": float(np.mean(test_first.max(axis=1) < choice.threshold)),
        },
        "metrics": {"test": metrics.to_dict()},
        "second_stage_test": _summary(second_metrics),
        "created_at": utc_now(),
    }
    if write:
        from product_classifier.export.quantize import record_section

        record_section(card_path, "cascade", entry)
    return entry

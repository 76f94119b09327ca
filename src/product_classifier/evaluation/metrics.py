"""Classification metrics in plain numpy, so that the service-side tools (no torch, no sklearn)
compute exactly what offline evaluation reports.

Conventions follow scikit-learn with ``labels=range(K)`` and ``zero_division=0``: every class
counts in the macro average even when absent, and an undefined precision, recall or F1 is 0.
The confusion matrix has true classes as rows and predicted classes as columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# The per-class bar every release must clear (precision and recall of each class).
QUALITY_BAR = 0.85


@dataclass(frozen=True)
class ClassMetrics:
    class_id: int
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # number of true samples of the class


@dataclass(frozen=True)
class ClassificationMetrics:
    n: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    min_precision: float
    min_recall: float
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready types (ints and floats, no numpy scalars)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationMetrics:
        fields = dict(data)
        fields["per_class"] = [ClassMetrics(**row) for row in data["per_class"]]
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    @property
    def class_names(self) -> list[str]:
        return [row.name for row in self.per_class]

    def failing_classes(self, bar: float = QUALITY_BAR) -> list[ClassMetrics]:
        """Classes whose precision or recall is below ``bar``."""
        return [c for c in self.per_class if c.precision < bar or c.recall < bar]


def _as_labels(values: Any, what: str, num_classes: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{what} holds class ids outside [0, {num_classes})")
    return arr.astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """int64 [K, K]: entry [t, p] counts samples of true class t predicted as p."""
    t = _as_labels(y_true, "y_true", num_classes)
    p = _as_labels(y_pred, "y_pred", num_classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def compute_metrics(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> ClassificationMetrics:
    """Accuracy, per-class and macro precision/recall/F1 and the confusion matrix."""
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("cannot compute metrics of zero samples")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_divide(tp, predicted.astype(np.float64))
    recall = _safe_divide(tp, support.astype(np.float64))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    per_class = [
        ClassMetrics(
            class_id=i,
            name=str(class_names[i]),
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
            support=int(support[i]),
        )
        for i in range(k)
    ]
    return ClassificationMetrics(
        n=n,
        accuracy=float(tp.sum() / n),
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        min_precision=float(precision.min()),
        min_recall=float(recall.min()),
        per_class=per_class,
        confusion_matrix=cm.tolist(),
    )


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Accuracy of ``a`` minus that of ``b`` (boolean "right" flags on the same images), in pp,
    with its paired standard error: only the images where the two disagree carry information,
    so the paired error is much smaller than two independent accuracies' would be."""
    n = len(a)
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    diff = (wins - losses) / n
    se = float(np.sqrt(max(wins + losses - n * diff**2, 0.0))) / n
    return {"delta_pp": 100 * diff, "se_pp": 100 * se, "wins": wins, "losses": losses}

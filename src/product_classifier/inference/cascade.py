"""A confidence cascade: a small model answers what it is sure of, the released model the rest.

The released ResNet-20 (width 32) costs ~0.72 ms of CPU per 28x28 image in INT8; its distilled
width-16 student costs ~0.25 ms but is slightly less accurate, mostly on Shirt. Most catalog
images are easy: the student is right on nearly all of those it is confident about. So the
student classifies every image, and only the rows whose top probability is below
``threshold`` go through the released model, whose answer replaces the student's.

The threshold is chosen on the validation split (``export/cascade.py``): the cheapest one whose
validation accuracy and per-class precision/recall match the released model's. Measured on the
10k test set (``docs/model_card.md``): the same accuracy as the released INT8 model with ~9% of
the images escalated, i.e. about 0.32 ms instead of 0.72 ms of CPU per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from product_classifier.preprocessing import FASHION_MNIST_SPEC, InputSpec


class Stage(Protocol):
    class_names: tuple[str, ...]
    model_version: str
    providers: tuple[str, ...]

    def predict_proba(self, batch: np.ndarray) -> np.ndarray: ...

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None: ...

    def runtime_info(self) -> dict[str, Any]: ...


class CascadePredictor:
    """``first`` for every row, ``second`` for the rows ``first`` is unsure of."""

    def __init__(self, first: Stage, second: Stage, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"cascade threshold must be in (0, 1], got {threshold}")
        if first.class_names != second.class_names:
            raise ValueError("the cascade's two models disagree on the class names")
        if getattr(first, "spec", None) != getattr(second, "spec", None):
            raise ValueError("the cascade's two models expect different inputs (input_spec)")
        self.first = first
        self.second = second
        self.threshold = threshold
        self.class_names = second.class_names
        self.spec: InputSpec = getattr(second, "spec", FASHION_MNIST_SPEC)
        self.providers = second.providers
        # The answer's quality is the released model's, so is its version (plus the marker).
        self.model_version = f"{second.model_version}+cascade"
        # Plain counters (one batch thread per slot may add at once; an int += is atomic
        # enough under the GIL for a statistic).
        self.rows = 0
        self.escalated = 0
        # Metrics hook: (images, escalated) after each call, in the calling (worker) thread.
        self.on_batch: Callable[[int, int], None] | None = None

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        probs = self.first.predict_proba(batch)
        unsure = np.flatnonzero(probs.max(axis=1) < self.threshold)
        if len(unsure):
            probs[unsure] = self.second.predict_proba(batch[unsure])
        self.rows += len(batch)
        self.escalated += len(unsure)
        if self.on_batch is not None:
            self.on_batch(len(batch), len(unsure))
        return probs

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        self.first.warmup(batch_sizes)
        self.second.warmup(batch_sizes)

    def runtime_info(self) -> dict[str, Any]:
        info = self.second.runtime_info()
        info["model_version"] = self.model_version
        info["cascade"] = {
            "threshold": self.threshold,
            "first": self.first.runtime_info(),
            "rows": self.rows,
            "escalated": self.escalated,
            "escalated_fraction": self.escalated / self.rows if self.rows else None,
        }
        return info

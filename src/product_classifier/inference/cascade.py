"""A confidence cascade: a small model answers what it is sure of, the released model the rest.

The released ResNet-20 (width 32) costs more CPU per 28x28 image than its distilled width-16
student, which is slightly less accurate, mostly on Shirt. Most catalog images are
easy: the student is right on nearly all of those it is confident about. So the student
classifies every image, and only the rows whose top probability is below ``threshold`` go
through the released model, whose answer replaces the student's.

The threshold is chosen on the validation split (``export/cascade.py``): the cheapest one whose
validation accuracy and per-class precision/recall match the released model's. The figures
come from runs, not from here: the share of images escalated and the cascade's accuracy are in
the model card (``cascade`` section, ``docs/model_card.md``), each stage's CPU time per image
and the cascade's in ``docs/performance.md``.
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


# Which stage answered an image (the ``stage`` label of cascade_images_total): the distilled
# first stage, or the full released model for the rows the first stage was unsure of.
STAGES = ("student", "full")
SHORT_HASH = 12  # hex digits of a stage's sha256 in model_version (the full ones: /v1/model)


def cascade_version(
    first: str, second: str, first_sha256: str | None, second_sha256: str | None
) -> str:
    """``<full>@<sha>+<student>@<sha>+cascade``: both stages and the first digits of their hashes.

    The released (second) model comes first: the answers have its accuracy. A stage whose hash
    is unknown is named without one.
    """

    def name(version: str, sha256: str | None) -> str:
        return f"{version}@{sha256[:SHORT_HASH]}" if sha256 else version

    return f"{name(second, second_sha256)}+{name(first, first_sha256)}+cascade"


class CascadePredictor:
    """``first`` for every row, ``second`` for the rows ``first`` is unsure of."""

    def __init__(
        self,
        first: Stage,
        second: Stage,
        threshold: float,
        sha256: tuple[str | None, str | None] = (None, None),
    ) -> None:
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
        # (first, second) stage's sha256, as loaded; built once, never per request.
        self.sha256 = sha256
        self.model_version = cascade_version(
            first.model_version, second.model_version, sha256[0], sha256[1]
        )
        # Plain counters (one batch thread per slot may add at once; an int += is atomic
        # enough under the GIL for a statistic).
        self.rows = 0
        self.escalated = 0
        # Metrics hook: (images the first stage answered, images the second stage answered)
        # after each call, in the calling (worker) thread.
        self.on_batch: Callable[[int, int], None] | None = None

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        probs = self.first.predict_proba(batch)
        unsure = np.flatnonzero(probs.max(axis=1) < self.threshold)
        if len(unsure):
            probs[unsure] = self.second.predict_proba(batch[unsure])
        self.rows += len(batch)
        self.escalated += len(unsure)
        if self.on_batch is not None:
            self.on_batch(len(batch) - len(unsure), len(unsure))
        return probs

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        self.first.warmup(batch_sizes)
        self.second.warmup(batch_sizes)

    def runtime_info(self) -> dict[str, Any]:
        info = self.second.runtime_info()
        info["model_version"] = self.model_version
        info["cascade"] = {
            "threshold": self.threshold,
            # Which model answers what: the student every image it is sure of, the full
            # (released) model the rest; each named with its whole sha256.
            "stages": [
                {"stage": stage, "model_version": model.model_version, "sha256": sha}
                for stage, model, sha in zip(
                    STAGES, (self.first, self.second), self.sha256, strict=True
                )
            ],
            "first": self.first.runtime_info(),
            "rows": self.rows,
            "escalated": self.escalated,
            "escalated_fraction": self.escalated / self.rows if self.rows else None,
        }
        return info

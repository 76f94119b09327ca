"""The pictures' second opinion: the released answer plus the picture expert's confidence.

Real pictures (every upload but a 28x28 image) are answered by the served model as before; a
picture expert, fine-tuned longer on synthetic pictures of no category, only adds its top
probability, which the pictures' review policy reads (``ReviewPolicy.second_opinion``): below
it, the picture is flagged out of scope. Rows come back as ``C + 1`` numbers, the served
model's C probabilities and then the expert's top probability, so one batch call (and one
thread hop) carries both; :func:`split_opinion` takes them apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def opinion_of(expert: Any, batch: np.ndarray) -> np.ndarray:
    """The expert's opinion on each row of a model-input batch: its top probability, [N]."""
    return np.asarray(expert.predict_proba(batch)).max(axis=1)


def with_opinion(predictor: Any, expert: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function: [N, ...] -> [N, C + 1] (probabilities, then the expert's top one)."""

    def predict(batch: np.ndarray) -> np.ndarray:
        probs = predictor.predict_proba(batch)
        opinion = opinion_of(expert, batch).astype(probs.dtype, copy=False)
        return np.concatenate([probs, opinion[:, None]], axis=1)

    return predict


def split_opinion(row: np.ndarray, classes: int) -> tuple[np.ndarray, float]:
    """One row of :func:`with_opinion` (or a plain probability row) -> (probs, opinion);
    the opinion is 1.0 (no doubt) when the row has none."""
    if row.shape[-1] == classes + 1:
        return row[:classes], float(row[classes])
    return row, 1.0

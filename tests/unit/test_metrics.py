"""Metrics against hand-computed cases and against scikit-learn on random data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from product_classifier.evaluation.metrics import (
    ClassificationMetrics,
    compute_metrics,
    confusion_matrix,
)

NAMES = ("a", "b", "c")


def test_hand_computed_case() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = compute_metrics(y_true, y_pred, NAMES)
    assert m.confusion_matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    a, b, c = m.per_class
    # a: P = 2/2, R = 2/3; b: P = 1/2, R = 1/2; c: P = 1/2, R = 1/1.
    assert (a.precision, a.recall, a.f1) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (b.precision, b.recall, b.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (c.precision, c.recall, c.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert [x.support for x in m.per_class] == [3, 2, 1]
    assert [x.name for x in m.per_class] == list(NAMES)
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.min_precision == pytest.approx(0.5)
    assert m.min_recall == pytest.approx(0.5)


def test_absent_and_never_predicted_classes_score_zero() -> None:
    m = compute_metrics([0, 0, 1], [0, 0, 0], NAMES)
    b, c = m.per_class[1], m.per_class[2]
    assert (b.precision, b.recall, b.f1, b.support) == (0.0, 0.0, 0.0, 1)
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 0)
    assert m.per_class[0].precision == pytest.approx(2 / 3)
    assert m.macro_f1 == pytest.approx(0.8 / 3)


def test_perfect_predictions() -> None:
    y = np.arange(10) % 3
    m = compute_metrics(y, y, NAMES)
    assert m.accuracy == m.macro_f1 == m.min_precision == m.min_recall == 1.0
    assert m.failing_classes() == []


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 10
    y_true = rng.integers(0, k, size=500)
    # Mostly right, with class-dependent errors, and class 9 never predicted in some seeds.
    noise = rng.integers(0, k - (seed % 2), size=500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, noise)
    names = [f"class{i}" for i in range(k)]
    m = compute_metrics(y_true, y_pred, names)
    labels = list(range(k))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose([c.precision for c in m.per_class], p)
    np.testing.assert_allclose([c.recall for c in m.per_class], r)
    np.testing.assert_allclose([c.f1 for c in m.per_class], f)
    assert [c.support for c in m.per_class] == s.tolist()
    assert m.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m.macro_f1 == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    np.testing.assert_array_equal(
        m.confusion_matrix, skm.confusion_matrix(y_true, y_pred, labels=labels)
    )


def test_to_dict_is_json_ready_and_round_trips() -> None:
    m = compute_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), NAMES)
    data = json.loads(json.dumps(m.to_dict()))
    assert data["per_class"][2] == {
        "class_id": 2,
        "name": "c",
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert isinstance(data["confusion_matrix"][0][0], int)
    assert ClassificationMetrics.from_dict({**data, "title": "ignored"}) == m


def test_failing_classes_uses_precision_and_recall() -> None:
    m = compute_metrics([0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 2, 2], NAMES)
    assert [c.name for c in m.failing_classes(0.85)] == ["a", "b"]  # P(a) = 2/3, R(b) = 1/2


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        ([0, 1], [0], "2 labels but y_pred has 1"),
        ([0, 3], [0, 1], "outside"),
        ([0, -1], [0, 1], "outside"),
        ([0.0, 1.0], [0, 1], "integer"),
        ([[0, 1]], [[0, 1]], "1-D"),
        ([], [], "zero samples"),
    ],
)
def test_invalid_inputs_are_rejected(y_true: list, y_pred: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(y_true, y_pred, NAMES)


def test_confusion_matrix_orientation() -> None:
    cm = confusion_matrix([2], [0], 3)
    assert cm[2, 0] == 1 and cm.sum() == 1  # row = true class, column = prediction

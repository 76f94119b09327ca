"""The released artifacts/model.onnx against the release bar, measured from the file itself.

The metrics are recomputed here with onnxruntime on the real 10k Fashion-MNIST test set; the
model card is only checked against them (and its SHA-256 against the file), never trusted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from product_classifier.constants import CLASS_NAMES
from product_classifier.evaluation.metrics import ClassificationMetrics, compute_metrics

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "artifacts/model.onnx"
CARD = ROOT / "artifacts/model_card.json"

MIN_ACCURACY = 0.95
MIN_MACRO_F1 = 0.95
MIN_CLASS_PRECISION_RECALL = 0.85
MAX_PARAMETERS = 1_500_000

pytestmark = [
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def test_metrics(fashion_mnist) -> ClassificationMetrics:
    import onnxruntime as ort

    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.preprocessing import to_model_input

    images, labels = load_fashion_mnist("test", data_dir=fashion_mnist.directory)
    assert len(labels) == 10_000
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [
            session.run(["logits"], {"image": to_model_input(images[i : i + 500])})[0]
            for i in range(0, len(images), 500)
        ]
    )
    assert logits.shape == (10_000, len(CLASS_NAMES))
    return compute_metrics(labels, logits.argmax(axis=1), CLASS_NAMES)


def test_accuracy_and_macro_f1_clear_the_bar(test_metrics: ClassificationMetrics) -> None:
    assert test_metrics.accuracy >= MIN_ACCURACY
    assert test_metrics.macro_f1 >= MIN_MACRO_F1


def test_every_class_precision_and_recall_clear_the_bar(
    test_metrics: ClassificationMetrics,
) -> None:
    failing = {
        c.name: (round(c.precision, 4), round(c.recall, 4))
        for c in test_metrics.per_class
        if c.precision < MIN_CLASS_PRECISION_RECALL or c.recall < MIN_CLASS_PRECISION_RECALL
    }
    assert not failing, f"(precision, recall) below {MIN_CLASS_PRECISION_RECALL}: {failing}"


def test_parameter_count_from_the_graph_initializers() -> None:
    import onnx

    graph = onnx.load(str(MODEL)).graph
    count = sum(int(np.prod(init.dims)) for init in graph.initializer)
    assert 0 < count <= MAX_PARAMETERS


def test_card_matches_the_file_and_the_measured_metrics(
    test_metrics: ClassificationMetrics,
) -> None:
    from product_classifier.provenance import sha256_file

    card = json.loads(CARD.read_text())
    assert card["sha256"] == sha256_file(MODEL)
    assert card["size_bytes"] == MODEL.stat().st_size
    claimed = card["metrics"]["test"]
    assert claimed["n"] == test_metrics.n
    # Same file, same images: only a float tie flipped by a different CPU could move a
    # prediction, so allow a handful of images.
    assert claimed["accuracy"] == pytest.approx(test_metrics.accuracy, abs=5e-4)
    assert claimed["macro_f1"] == pytest.approx(test_metrics.macro_f1, abs=5e-4)

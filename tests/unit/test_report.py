"""The evaluation report files: JSON, PNG and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from product_classifier.constants import CLASS_NAMES
from product_classifier.evaluation.metrics import ClassificationMetrics, compute_metrics
from product_classifier.evaluation.report import render_summary, write_evaluation_report


def _metrics() -> ClassificationMetrics:
    y_true = np.repeat(np.arange(10), 100)
    y_pred = y_true.copy()
    y_pred[np.flatnonzero(y_true == 6)[:30]] = 0  # Shirt R = 0.70, T-shirt P = 100/130: fail
    y_pred[np.flatnonzero(y_true == 8)[:10]] = 7  # Bag R = 0.90, Sneaker P = 100/110: pass
    return compute_metrics(y_true, y_pred, CLASS_NAMES)


def test_writes_all_files(tmp_path: Path) -> None:
    metrics = _metrics()
    paths = write_evaluation_report(
        metrics, tmp_path / "out", "Test set", extra={"model_version": "v1", "data": tmp_path}
    )
    assert set(paths) == {"metrics", "confusion_matrix", "confusion_matrix_png", "summary"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())

    saved = json.loads(paths["metrics"].read_text())
    assert saved["title"] == "Test set"
    assert saved["extra"] == {"model_version": "v1", "data": str(tmp_path)}
    assert saved["passes_bar"] is False
    assert ClassificationMetrics.from_dict(saved) == metrics

    cm = json.loads(paths["confusion_matrix"].read_text())
    assert cm["class_names"] == list(CLASS_NAMES)
    assert cm["matrix"] == metrics.confusion_matrix

    with Image.open(paths["confusion_matrix_png"]) as image:
        assert image.format == "PNG" and min(image.size) > 400


def test_summary_marks_each_class_against_the_bar() -> None:
    metrics = _metrics()
    text = render_summary(metrics, "Test set", extra={"model_version": "v1"})
    by_name = {line.split("|")[2].strip(): line for line in text.splitlines()[1:] if "|" in line}
    assert by_name["T-shirt/top"].rstrip().endswith("❌ |")
    assert by_name["Shirt"].rstrip().endswith("❌ |")
    assert "| 0.7000 |" in by_name["Shirt"]
    assert by_name["Trouser"].rstrip().endswith("✅ |")
    assert sum("✅" in line for line in by_name.values()) == 8
    assert f"Accuracy: **{metrics.accuracy:.4f}**" in text
    assert f"Macro-F1: **{metrics.macro_f1:.4f}**" in text
    assert "2 below: T-shirt/top, Shirt" in text
    assert "- model_version: v1" in text
    assert text.startswith("# Test set\n")


def test_summary_reports_all_passing() -> None:
    y = np.arange(10)
    text = render_summary(compute_metrics(y, y, CLASS_NAMES), "Perfect", image=None)
    assert "✅ all classes pass" in text and "❌" not in text and "![" not in text

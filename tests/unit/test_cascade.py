"""The confidence cascade: which rows escalate, the threshold rule, loading it from a card."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from product_classifier.constants import CLASS_NAMES
from product_classifier.evaluation.metrics import compute_metrics
from product_classifier.export.cascade import (
    CascadeError,
    cascade_predictions,
    choose_threshold,
    gate,
)
from product_classifier.inference.cascade import CascadePredictor
from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.inference.errors import ModelLoadError
from product_classifier.inference.model_card import load_verified_model, sha256_file


class TableModel:
    """Returns fixed probability rows, keyed by the batch's first pixel (the row's id)."""

    class_names = tuple(CLASS_NAMES)
    providers = ("CPUExecutionProvider",)

    def __init__(self, rows: dict[int, np.ndarray], model_version: str) -> None:
        self.rows = rows
        self.model_version = model_version
        self.calls: list[list[int]] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        ids = [int(v) for v in batch[:, 0, 0, 0]]
        self.calls.append(ids)
        return np.stack([self.rows[i].copy() for i in ids])

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        pass

    def runtime_info(self) -> dict[str, Any]:
        return {"model_version": self.model_version}


def one_hot(cls: int, confidence: float) -> np.ndarray:
    row = np.full(10, (1.0 - confidence) / 9, dtype=np.float32)
    row[cls] = confidence
    return row


def batch_of(ids: list[int]) -> np.ndarray:
    x = np.zeros((len(ids), 1, 28, 28), dtype=np.float32)
    x[:, 0, 0, 0] = ids
    return x


def test_only_unsure_rows_reach_the_second_model_and_take_its_answer() -> None:
    first = TableModel({0: one_hot(1, 0.99), 1: one_hot(2, 0.40), 2: one_hot(3, 0.80)}, "s")
    second = TableModel({0: one_hot(5, 0.9), 1: one_hot(6, 0.9), 2: one_hot(7, 0.9)}, "big")
    cascade = CascadePredictor(first, second, threshold=0.8)

    probs = cascade.predict_proba(batch_of([0, 1, 2]))

    assert probs.argmax(axis=1).tolist() == [1, 6, 3]  # 0.80 is not below 0.80: kept
    assert second.calls == [[1]]
    assert (cascade.rows, cascade.escalated) == (3, 1)
    assert cascade.model_version == "big+s+cascade"  # both stages; no hashes given
    assert cascade.runtime_info()["cascade"]["escalated_fraction"] == pytest.approx(1 / 3)


def test_a_confident_batch_never_calls_the_second_model() -> None:
    first = TableModel({0: one_hot(1, 0.99)}, "s")
    second = TableModel({}, "big")
    CascadePredictor(first, second, threshold=0.9).predict_proba(batch_of([0, 0]))
    assert second.calls == []


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_threshold_must_be_a_probability(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CascadePredictor(TableModel({}, "a"), TableModel({}, "b"), threshold)


def _synthetic(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A second stage that is always right, a first stage that is right when confident."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    second = np.stack([one_hot(c, 0.9) for c in labels])
    confidence = rng.uniform(0.3, 1.0, n)
    wrong = (labels + 1) % 10
    first_cls = np.where(confidence < 0.7, wrong, labels)  # unsure -> wrong
    first = np.stack([one_hot(c, p) for c, p in zip(first_cls, confidence, strict=True)])
    return first, second, labels


def test_threshold_rule_picks_the_cheapest_one_that_matches_the_second_stage() -> None:
    first, second, labels = _synthetic()
    choice = choose_threshold(first, second, labels, grid=(0.5, 0.6, 0.7, 0.8, 0.9))
    assert choice.threshold == 0.7  # below 0.7 the wrong, unsure rows stay with the student
    assert choice.reference["accuracy"] == 1.0
    rows = {row["threshold"]: row for row in choice.grid}
    assert rows[0.6]["accuracy"] < 1.0 and rows[0.7]["accuracy"] == 1.0
    assert rows[0.7]["escalated"] == pytest.approx(np.mean(first.max(axis=1) < 0.7))
    predictions = cascade_predictions(first, second, choice.threshold)
    assert (predictions == labels).all()


def test_no_threshold_matching_is_an_error() -> None:
    first, second, labels = _synthetic()
    with pytest.raises(CascadeError, match="too weak"):
        choose_threshold(first, second, labels, grid=(0.5, 0.6))


def test_gate_blocks_a_cascade_below_the_bars() -> None:
    labels = np.repeat(np.arange(10), 100)
    good = compute_metrics(labels, labels, CLASS_NAMES)
    worse = labels.copy()
    worse[:20] = 1  # class 0 recall 0.8
    assert gate(good, good) == []
    problems = gate(compute_metrics(labels, worse, CLASS_NAMES), good)
    assert any("T-shirt/top" in p for p in problems)
    assert any("below the released model" in p for p in problems)


# -- loading from a model card ------------------------------------------------------------------


def _cascade_dir(tmp_path: Path, threshold: Any = 0.75) -> Path:
    second = build_contract_model(tmp_path / "model.onnx", seed=1, model_version="big-1")
    first = build_contract_model(tmp_path / "first.onnx", seed=2, model_version="small-1")
    cascade = {
        "second": "model.onnx",
        "threshold": threshold,
        "first": {"file": "first.onnx", "sha256": sha256_file(first)},
    }
    write_model_card(second, model_version="big-1", cascade=cascade)
    return second


def test_the_card_cascade_is_loaded_and_verified(tmp_path: Path) -> None:
    model = _cascade_dir(tmp_path)
    loaded = load_verified_model(model, cascade=True)
    assert isinstance(loaded.predictor, CascadePredictor)
    assert loaded.predictor.threshold == 0.75
    # Both stages, each with the first digits of its sha256; /v1/model has the whole hashes.
    big, small = sha256_file(model), sha256_file(tmp_path / "first.onnx")
    assert loaded.predictor.model_version == f"big-1@{big[:12]}+small-1@{small[:12]}+cascade"
    stages = loaded.predictor.runtime_info()["cascade"]["stages"]
    assert stages == [
        {"stage": "student", "model_version": "small-1", "sha256": small},
        {"stage": "full", "model_version": "big-1", "sha256": big},
    ]
    unverified = load_verified_model(model, cascade=True, verify=False).predictor
    assert unverified.model_version == loaded.predictor.model_version
    assert (
        load_verified_model(model, cascade=True, cascade_threshold=0.9).predictor.threshold == 0.9
    )
    # Without asking for it, the same files serve the second model alone.
    assert not isinstance(load_verified_model(model).predictor, CascadePredictor)


def test_a_tampered_first_stage_is_refused(tmp_path: Path) -> None:
    model = _cascade_dir(tmp_path)
    (tmp_path / "first.onnx").write_bytes((tmp_path / "first.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        load_verified_model(model, cascade=True)


def test_a_broken_cascade_entry_is_refused(tmp_path: Path) -> None:
    model = _cascade_dir(tmp_path, threshold=2)
    with pytest.raises(ModelLoadError, match="threshold"):
        load_verified_model(model, cascade=True)


def test_a_card_for_another_file_does_not_apply(tmp_path: Path) -> None:
    model = _cascade_dir(tmp_path)
    card = json.loads((tmp_path / "model_card.json").read_text())
    card["cascade"]["second"] = "other.onnx"
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    assert not isinstance(load_verified_model(model, cascade=True).predictor, CascadePredictor)


def test_the_service_serves_the_cascade_and_counts_escalations(tmp_path: Path) -> None:
    import asyncio
    import io

    import httpx
    from PIL import Image

    from product_classifier.serving.app import create_app
    from product_classifier.serving.settings import ServeSettings

    model = _cascade_dir(tmp_path, threshold=1.0)  # 1.0: every image is escalated
    app = create_app(ServeSettings(model_path=model))
    buf = io.BytesIO()
    Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(buf, "PNG")

    async def scenario() -> tuple[dict[str, Any], str, dict[str, Any]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answer = await client.post("/v1/predict", files={"file": ("a.png", buf.getvalue())})
                metrics = await client.get("/metrics")
                info = await client.get("/v1/model")
                return answer.json(), metrics.text, info.json()

    answer, metrics, info = asyncio.run(scenario())
    stages = {s["stage"]: s["sha256"] for s in info["runtime"]["cascade"]["stages"]}
    assert stages == {"student": sha256_file(tmp_path / "first.onnx"), "full": sha256_file(model)}
    assert info["runtime"]["model_version"] == answer["model_version"]
    big, small = sha256_file(model), sha256_file(tmp_path / "first.onnx")
    assert answer["model_version"] == f"big-1@{big[:12]}+small-1@{small[:12]}+cascade"
    # The one image was escalated: the full model answered it, the student none.
    assert 'cascade_images_total{stage="full"} 1.0' in metrics
    assert 'cascade_images_total{stage="student"} 0.0' in metrics

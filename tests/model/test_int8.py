"""The released INT8 model: agrees with FP32, keeps the contract, and its card entry is true.

Plus the quantisation pipeline itself on a tiny contract model (fast) and the release gate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from product_classifier.constants import CLASS_NAMES
from product_classifier.evaluation.metrics import compute_metrics
from product_classifier.export.quantize import (
    FIRST_CONV,
    LAST_GEMM,
    QuantizationSettings,
    check_quality,
    quantize_model,
    record_variant,
    resolve_excluded_nodes,
    top1_agreement,
)
from product_classifier.inference.contract_model import build_contract_model
from product_classifier.inference.model_card import load_verified_model, sha256_file
from product_classifier.inference.predictor import OnnxPredictor
from product_classifier.serving.settings import MODEL_VARIANTS

REPO_ROOT = Path(__file__).resolve().parents[2]
FP32 = REPO_ROOT / MODEL_VARIANTS["fp32"]
INT8 = REPO_ROOT / MODEL_VARIANTS["int8"]
CARD = REPO_ROOT / "artifacts" / "model_card.json"
SAMPLE = 2000


@pytest.fixture(scope="module")
def released() -> tuple[Path, Path]:
    if not (FP32.is_file() and INT8.is_file()):
        pytest.skip(
            "artifacts/model.onnx or model.int8.onnx missing: run `product-classifier quantize`"
        )
    return FP32, INT8


@pytest.fixture(scope="module")
def test_sample() -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified sample of the 10k TEST images (never used for calibration)."""
    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.data.split import stratified_subset
    from product_classifier.preprocessing import to_model_input

    images, labels = load_fashion_mnist("test")
    idx = stratified_subset(labels, SAMPLE / len(labels), seed=123)
    return to_model_input(images[idx]), labels[idx]


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_test_images(
    released: tuple[Path, Path], test_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    fp32_path, int8_path = released
    x, y = test_sample
    fp32, int8 = OnnxPredictor(fp32_path), OnnxPredictor(int8_path)
    fp32_logits = np.concatenate(
        [fp32.predict_logits(x[i : i + 500]) for i in range(0, SAMPLE, 500)]
    )
    int8_logits = np.concatenate(
        [int8.predict_logits(x[i : i + 500]) for i in range(0, SAMPLE, 500)]
    )
    agreement = top1_agreement(int8_logits, fp32_logits)
    assert agreement >= 0.99, f"INT8 agrees with FP32 on only {agreement:.2%} of {SAMPLE} images"
    # Same ballpark accuracy on this sample (the full-set gate is checked at release time).
    acc = compute_metrics(y, int8_logits.argmax(1), CLASS_NAMES).accuracy
    ref = compute_metrics(y, fp32_logits.argmax(1), CLASS_NAMES).accuracy
    assert acc >= ref - 0.005


def test_int8_keeps_the_contract_and_metadata(released: tuple[Path, Path]) -> None:
    fp32_path, int8_path = released
    fp32, int8 = OnnxPredictor(fp32_path), OnnxPredictor(int8_path)  # checks I/O and class_names
    assert int8.class_names == fp32.class_names == CLASS_NAMES
    assert int8.model_version == fp32.model_version + "+int8"
    quant = json.loads(int8.metadata["quantization"])
    assert quant["format"] == "QDQ" and "train" in quant["calibration_data"]
    for key, value in fp32.metadata.items():
        if key != "model_version":
            assert int8.metadata[key] == value, key
    # Really quantised: int8 weights, and at most a third of the FP32 file.
    graph = onnx.load(str(int8_path)).graph
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) > 20
    assert int8_path.stat().st_size <= fp32_path.stat().st_size / 3


def test_card_records_the_variant_and_the_service_verifies_it(released: tuple[Path, Path]) -> None:
    fp32_path, int8_path = released
    card = json.loads(CARD.read_text())
    entry = card["variants"]["int8"]
    assert entry["file"] == int8_path.name
    assert entry["sha256"] == sha256_file(int8_path)
    assert entry["size_bytes"] == int8_path.stat().st_size
    assert card["sha256"] == sha256_file(fp32_path)  # the FP32 entry is untouched
    test = entry["metrics"]["test"]
    assert test["n"] == 10_000
    assert (card["metrics"]["test"]["accuracy"] - test["accuracy"]) * 100 <= 0.3
    assert min(test["min_precision"], test["min_recall"]) >= 0.85
    # load_verified_model picks the variant's hash and version for the INT8 file.
    assert load_verified_model(int8_path, CARD).sha256 == entry["sha256"]
    assert load_verified_model(fp32_path, CARD).sha256 == card["sha256"]


# -- the pipeline, on a tiny Flatten -> Gemm contract model (no dataset needed) ----------------


@pytest.mark.slow  # quant_pre_process + onnxruntime.quantization imports: ~6 s on 2 busy cores
def test_quantize_model_keeps_io_and_metadata(tmp_path: Path) -> None:
    src = build_contract_model(tmp_path / "m.onnx", seed=4, model_version="v7")
    images = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    settings = QuantizationSettings(method="minmax", calibration_size=64, batch_size=16)
    result = quantize_model(src, tmp_path / "m.int8.onnx", settings, images=images)
    assert result.model_version == "v7+int8"
    q = OnnxPredictor(result.path)  # contract: names, float32, dynamic batch, class_names
    assert q.model_version == "v7+int8"
    ref = OnnxPredictor(src)
    x = images[:32]
    assert top1_agreement(q.predict_logits(x), ref.predict_logits(x)) >= 0.9
    assert q.predict_logits(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)


@pytest.mark.slow
def test_excluded_nodes_stay_float(tmp_path: Path) -> None:
    src = build_contract_model(tmp_path / "m.onnx", seed=4)
    model = onnx.load(str(src))
    assert resolve_excluded_nodes(model, (LAST_GEMM,)) == (model.graph.node[-1].name,)
    with pytest.raises(ValueError, match="no Conv"):
        resolve_excluded_nodes(model, (FIRST_CONV,))
    with pytest.raises(ValueError, match="no such node"):
        resolve_excluded_nodes(model, ("nope",))
    images = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    settings = QuantizationSettings(calibration_size=16, batch_size=16, exclude=(LAST_GEMM,))
    result = quantize_model(src, tmp_path / "q.onnx", settings, images=images)
    graph = onnx.load(str(result.path)).graph
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    weight_inputs = {init.name for init in graph.initializer}
    assert gemm.input[1] in weight_inputs  # float weight straight from an initializer, no DQ


def test_quality_gate_flags_accuracy_drop_and_weak_classes() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 100)
    perfect = compute_metrics(y, y, CLASS_NAMES)
    assert check_quality(perfect, perfect) == []
    slightly_worse = y.copy()
    slightly_worse[:2] = 1  # 0.2 pp lost, all classes still fine
    assert check_quality(compute_metrics(y, slightly_worse, CLASS_NAMES), perfect) == []
    shirts = y.copy()
    shirts[rng.choice(np.flatnonzero(y == 6), 20, replace=False)] = 0  # Shirt recall 0.80
    problems = check_quality(compute_metrics(y, shirts, CLASS_NAMES), perfect)
    assert any("2.00 pp" in p for p in problems)
    assert any("'Shirt'" in p for p in problems) and any("'T-shirt/top'" in p for p in problems)


def test_record_variant_leaves_the_rest_of_the_card_alone(tmp_path: Path) -> None:
    card = tmp_path / "model_card.json"
    original = {"sha256": "a" * 64, "metrics": {"test": {"accuracy": 0.9549}}, "x": [1, 2.5]}
    card.write_text(json.dumps(original, indent=2) + "\n")
    record_variant(card, "int8", {"file": "m.int8.onnx", "sha256": "b" * 64})
    updated = json.loads(card.read_text())
    assert updated.pop("variants") == {"int8": {"file": "m.int8.onnx", "sha256": "b" * 64}}
    assert updated == original


# -- the service serves INT8 by default ---------------------------------------------------------


@pytest.fixture
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("PRODUCT_CLASSIFIER_"):
            monkeypatch.delenv(key)


@pytest.mark.usefixtures("_no_env")
def test_service_defaults_to_the_int8_cascade(monkeypatch: pytest.MonkeyPatch) -> None:
    from product_classifier.released import RELEASE_DIR  # artifacts/, through the package
    from product_classifier.serving.settings import load_settings

    default = load_settings()
    assert default.model_variant == "cascade"  # the INT8 model behind its first stage
    assert default.model_path == RELEASE_DIR / "model.int8.onnx"
    assert load_settings(model_variant="int8").model_path == RELEASE_DIR / "model.int8.onnx"
    assert default.card_path == RELEASE_DIR / "model_card.json"  # one card for both files
    assert load_settings(model_variant="fp32").model_path == RELEASE_DIR / "model.onnx"
    monkeypatch.setenv("PRODUCT_CLASSIFIER_MODEL_VARIANT", "fp32")
    assert load_settings().model_path == RELEASE_DIR / "model.onnx"
    # An explicit path always wins over the variant.
    explicit = load_settings(model_path=Path("/models/m.onnx"), model_variant="int8")
    assert explicit.model_path == Path("/models/m.onnx")
    assert explicit.card_path == Path("/models/model_card.json")


@pytest.mark.usefixtures("_no_env")
def test_unknown_variant_is_refused() -> None:
    from product_classifier.serving.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="MODEL_VARIANT"):
        load_settings(model_variant="fp16")


def test_variant_file_with_a_wrong_hash_is_refused(tmp_path: Path) -> None:
    from product_classifier.inference.errors import ModelLoadError

    fp32 = build_contract_model(tmp_path / "model.onnx", seed=1, model_version="v1")
    int8 = build_contract_model(tmp_path / "model.int8.onnx", seed=2, model_version="v1+int8")
    card = tmp_path / "model_card.json"
    card.write_text(json.dumps({"file": fp32.name, "sha256": sha256_file(fp32)}))
    # Not in the card's variants yet: the top-level (FP32) hash does not match -> refused.
    with pytest.raises(ModelLoadError, match="sha256"):
        load_verified_model(int8, card)
    record_variant(card, "int8", {"file": int8.name, "sha256": "0" * 64})
    with pytest.raises(ModelLoadError, match="sha256"):
        load_verified_model(int8, card)
    record_variant(card, "int8", {"file": int8.name, "sha256": sha256_file(int8)})
    assert load_verified_model(int8, card).sha256 == sha256_file(int8)
    assert load_verified_model(fp32, card).sha256 == sha256_file(fp32)

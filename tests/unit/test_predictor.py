"""OnnxPredictor and model-card verification, against tiny contract models built with onnx."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from product_classifier.constants import CLASS_NAMES
from product_classifier.inference.contract_model import (
    build_contract_model,
    contract_model_weights,
    write_model_card,
)
from product_classifier.inference.errors import ModelLoadError
from product_classifier.inference.model_card import load_verified_model, sha256_file
from product_classifier.inference.predictor import (
    OnnxPredictor,
    PredictorOptions,
    resolve_providers,
    softmax,
)
from product_classifier.preprocessing import FASHION_MNIST_SPEC, InputSpec

PREDICTOR_LOGGER = "product_classifier.inference.predictor"


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = build_contract_model(tmp_path / "model.onnx", seed=3, model_version="v-test")
    write_model_card(path)
    return path


@pytest.fixture
def predictor(model_path: Path) -> OnnxPredictor:
    return OnnxPredictor(model_path)


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


# -- loading and metadata -----------------------------------------------------------------------


def test_loads_contract_metadata(predictor: OnnxPredictor) -> None:
    assert predictor.class_names == CLASS_NAMES
    assert predictor.model_version == "v-test"
    assert predictor.providers[-1] == "CPUExecutionProvider"


def test_logits_match_the_graph_computed_in_numpy(
    predictor: OnnxPredictor, model_path: Path
) -> None:
    weight, bias = contract_model_weights(model_path)
    x = _batch(5)
    expected = x.reshape(5, -1) @ weight + bias
    logits = predictor.predict_logits(x)
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 3, 64])
def test_batch_axis_is_dynamic(predictor: OnnxPredictor, n: int) -> None:
    assert predictor.predict_proba(_batch(n)).shape == (n, 10)


def test_predict_proba_is_softmax_of_logits(predictor: OnnxPredictor) -> None:
    x = _batch(8, seed=1)
    probs = predictor.predict_proba(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), predictor.predict_logits(x).argmax(axis=1))


def test_non_float32_input_is_converted(predictor: OnnxPredictor) -> None:
    x = _batch(2)
    np.testing.assert_allclose(
        predictor.predict_logits(x.astype(np.float64)), predictor.predict_logits(x), rtol=1e-6
    )


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_wrong_input_shape_is_a_value_error(predictor: OnnxPredictor, shape: tuple) -> None:
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_logits(np.zeros(shape, dtype=np.float32))


def test_warmup_runs_requested_batch_sizes(predictor: OnnxPredictor) -> None:
    predictor.warmup((1, 64))  # must not raise


# -- contract validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_name": "pixels"}, "input named 'image'"),
        ({"output_name": "scores"}, "output named 'logits'"),
        ({"batch_dim": 1}, "dynamic batch axis"),
        ({"num_classes": 5}, r"float32 \[N, 10\]"),
        ({"class_names": None}, "'class_names' is missing"),
        ({"class_names": CLASS_NAMES[:9], "num_classes": 10}, r"float32 \[N, 9\]"),
        ({"class_names": ("Hat", "Hat", "Mug")}, "duplicates"),
        ({"class_names": ("Hat",)}, "at least 2"),
        ({"class_names": ("Hat", "")}, "non-empty"),
    ],
)
def test_contract_violations_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = build_contract_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelLoadError, match=message):
        OnnxPredictor(path)


def test_expected_class_names_are_enforced_when_given(tmp_path: Path) -> None:
    path = build_contract_model(tmp_path / "m.onnx", class_names=tuple(reversed(CLASS_NAMES)))
    OnnxPredictor(path)  # any class list is a valid contract...
    with pytest.raises(ModelLoadError, match="differ from"):
        OnnxPredictor(path, expected_class_names=CLASS_NAMES)  # ...unless the caller pins one


def test_catalog_model_takes_its_spec_and_categories_from_the_file(tmp_path: Path) -> None:
    spec = InputSpec(size=48, channels=3, canonicalization="letterbox")
    names = ("hat", "mug", "watch", "umbrella")
    path = build_contract_model(tmp_path / "catalog.onnx", class_names=names, spec=spec)
    predictor = OnnxPredictor(path)
    assert predictor.spec == spec
    assert predictor.class_names == names
    probs = predictor.predict_proba(np.zeros((3, 3, 48, 48), dtype=np.float32))
    assert probs.shape == (3, 4)
    with pytest.raises(ValueError, match=r"\[N, 3, 48, 48\]"):
        predictor.predict_logits(np.zeros((1, 1, 28, 28), dtype=np.float32))
    assert predictor.runtime_info()["input_spec"] == spec.to_dict()


def test_a_file_without_input_spec_is_a_fashion_mnist_model(predictor: OnnxPredictor) -> None:
    assert predictor.spec == FASHION_MNIST_SPEC
    assert "input_spec" not in predictor.metadata


def test_input_shape_must_match_the_recorded_spec(tmp_path: Path) -> None:
    import onnx

    spec = InputSpec(size=32, channels=3, canonicalization="letterbox")
    path = build_contract_model(tmp_path / "m.onnx", class_names=("a", "b"), spec=spec)
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "input_spec":
            prop.value = InputSpec(size=64, channels=3, canonicalization="letterbox").to_json()
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match=r"must have shape \[N, 3, 64, 64\]"):
        OnnxPredictor(path)


def test_an_invalid_input_spec_is_refused(tmp_path: Path) -> None:
    import onnx

    path = build_contract_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = (
        "input_spec",
        '{"size": 28, "channels": 2, "canonicalization": "letterbox"}',
    )
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="input_spec' is invalid: channels"):
        OnnxPredictor(path)


def test_class_names_must_be_json(tmp_path: Path) -> None:
    import onnx

    path = build_contract_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "class_names":
            prop.value = "T-shirt, Trouser"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        OnnxPredictor(path)


def test_missing_model_version_is_tolerated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = build_contract_model(tmp_path / "m.onnx", model_version=None)
    with caplog.at_level(logging.WARNING, logger=PREDICTOR_LOGGER):
        predictor = OnnxPredictor(path)
    assert predictor.model_version == "unknown"
    assert "model_version" in caplog.text


def test_missing_file_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxPredictor(tmp_path / "absent.onnx")


def test_corrupt_file_is_a_model_load_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ModelLoadError, match="could not load"):
        OnnxPredictor(path)


# -- providers ------------------------------------------------------------------------------------


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA"
)
def test_unavailable_gpu_providers_fall_back_to_cpu_with_a_warning(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = PredictorOptions(providers=("TensorrtExecutionProvider", "CUDAExecutionProvider"))
    with caplog.at_level(logging.WARNING, logger=PREDICTOR_LOGGER):
        predictor = OnnxPredictor(model_path, options)
    assert predictor.providers == ("CPUExecutionProvider",)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "expected a WARNING about the missing providers"
    assert "TensorrtExecutionProvider" in warnings[0].getMessage()
    assert "CUDAExecutionProvider" in warnings[0].getMessage()


def test_automatic_provider_choice_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=PREDICTOR_LOGGER):
        chosen = resolve_providers(None)
    assert chosen[-1] == "CPUExecutionProvider"
    assert set(chosen) <= set(ort.get_available_providers())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_provider_order_is_kept_and_cpu_is_always_last() -> None:
    assert resolve_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers([])[-1] == "CPUExecutionProvider"


# -- softmax --------------------------------------------------------------------------------------


def test_softmax_matches_the_textbook_formula() -> None:
    logits = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-5)


def test_softmax_is_stable_for_huge_logits_and_leaves_input_alone() -> None:
    logits = np.array([[1000.0, 1001.0, -1000.0] + [0.0] * 7], dtype=np.float32)
    before = logits.copy()
    probs = softmax(logits)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0, :2], [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-5)
    np.testing.assert_array_equal(logits, before)


# -- model card / sha256 --------------------------------------------------------------------------


def test_verified_load_reports_the_hash(model_path: Path) -> None:
    model = load_verified_model(model_path)
    assert model.sha256_verified
    assert model.sha256 == sha256_file(model_path)
    assert model.card["sha256"] == model.sha256
    assert model.predictor.class_names == CLASS_NAMES


def test_sha256_mismatch_is_refused(model_path: Path) -> None:
    write_model_card(model_path, sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="sha256"):
        load_verified_model(model_path)


def test_modified_model_is_refused(model_path: Path) -> None:
    with open(model_path, "ab") as fh:
        fh.write(b"\0")  # the card still has the old hash
    with pytest.raises(ModelLoadError, match="modified, truncated or swapped"):
        load_verified_model(model_path)


def test_uppercase_hash_in_card_is_accepted(model_path: Path) -> None:
    write_model_card(model_path, sha256=sha256_file(model_path).upper())
    assert load_verified_model(model_path).sha256_verified


@pytest.mark.parametrize(
    ("card_text", "message"),
    [
        (None, "model card not found"),
        ("{not json", "not readable JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"model_version": "x"}), "no valid 'sha256'"),
    ],
)
def test_broken_cards_are_refused(model_path: Path, card_text: str | None, message: str) -> None:
    card = model_path.with_name("model_card.json")
    if card_text is None:
        card.unlink()
    else:
        card.write_text(card_text)
    with pytest.raises(ModelLoadError, match=message):
        load_verified_model(model_path)


def test_corrupt_model_with_matching_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not an onnx model at all")
    write_model_card(path)
    with pytest.raises(ModelLoadError, match="could not load"):
        load_verified_model(path)


def test_missing_model_is_refused_before_the_card(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_verified_model(tmp_path / "model.onnx")


def test_verification_can_be_switched_off_for_development(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_model_card(model_path, sha256="0" * 64)
    with caplog.at_level(logging.WARNING):
        model = load_verified_model(model_path, verify=False)
    assert not model.sha256_verified
    assert "verification is OFF" in caplog.text
    model_path.with_name("model_card.json").unlink()
    assert load_verified_model(model_path, verify=False).card == {}

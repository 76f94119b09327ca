"""A tiny random-weight ONNX model that follows the serving contract (no torch, no training).

Tests and smoke runs use it to exercise the predictor and the service before (or without) a
trained model. It is Flatten -> Gemm, so its logits are easy to recompute in numpy. Keyword
arguments break the contract on purpose, so tests can check that a bad model is refused.
Needs the ``onnx`` package (a training/dev dependency), imported only when called.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.constants import (
    CLASS_NAMES,
    IMAGE_SIZE,
    NUM_CLASSES,
    ONNX_INPUT_NAME,
    ONNX_OUTPUT_NAME,
)
from product_classifier.inference.model_card import MODEL_CARD_NAME, sha256_file
from product_classifier.preprocessing import INPUT_SPEC_KEY, InputSpec

_MISSING: Any = object()


def build_contract_model(
    path: str | Path,
    *,
    seed: int = 0,
    model_version: str | None = "test-0",
    class_names: Sequence[str] | None = CLASS_NAMES,
    input_name: str = ONNX_INPUT_NAME,
    output_name: str = ONNX_OUTPUT_NAME,
    batch_dim: str | int = "N",
    num_classes: int | None = None,
    opset: int = 17,
    spec: InputSpec | None = None,
) -> Path:
    """Write the model to ``path`` and return it. ``None`` metadata values are left out.

    ``num_classes`` defaults to the number of ``class_names`` (10 without names); ``spec``
    makes a catalog model (its input shape and ``input_spec`` metadata).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else NUM_CLASSES
    item_shape = spec.item_shape if spec is not None else (1, IMAGE_SIZE, IMAGE_SIZE)
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(item_shape))
    weight = rng.normal(0.0, 0.5, size=(pixels, num_classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, size=(num_classes,)).astype(np.float32)
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Flatten", [input_name], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "weight", "bias"], [output_name]),
        ],
        name="contract_test_model",
        inputs=[
            helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch_dim, *item_shape])
        ],
        outputs=[
            helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch_dim, num_classes])
        ],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="product-classifier"
    )
    model.ir_version = min(model.ir_version, 9)  # loadable by older onnxruntime builds too
    metadata = {}
    if class_names is not None:
        metadata["class_names"] = json.dumps(list(class_names))
    if model_version is not None:
        metadata["model_version"] = model_version
    if spec is not None:
        metadata[INPUT_SPEC_KEY] = spec.to_json()
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def contract_model_weights(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(weight [784, C], bias [C]) of a model written by :func:`build_contract_model`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return arrays["weight"], arrays["bias"]


def write_model_card(
    model_path: str | Path,
    card_path: str | Path | None = None,
    *,
    sha256: str | None = _MISSING,
    **fields: Any,
) -> Path:
    """Write a model_card.json for ``model_path`` (its real sha256 unless one is given)."""
    model_path = Path(model_path)
    card_path = Path(card_path) if card_path is not None else model_path.with_name(MODEL_CARD_NAME)
    card: dict[str, Any] = {
        "model_name": "contract_test_model",
        "model_version": "test-0",
        "onnx_file": model_path.name,
        "class_names": list(CLASS_NAMES),
        "input": {"name": ONNX_INPUT_NAME, "shape": ["N", 1, IMAGE_SIZE, IMAGE_SIZE]},
        "output": {"name": ONNX_OUTPUT_NAME, "shape": ["N", NUM_CLASSES]},
        **fields,
    }
    if sha256 is _MISSING:
        card["sha256"] = sha256_file(model_path)
    elif sha256 is not None:
        card["sha256"] = sha256
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card_path

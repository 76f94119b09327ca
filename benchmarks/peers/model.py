"""What every peer server runs per image: the project's preprocessing, one ONNX Runtime call
with the service's session settings (one intra-op and one inter-op thread, no spinning: one
worker per core), softmax and the top 3. Imports only numpy, Pillow and onnxruntime (and the
project's ``preprocessing``), which every peer venv has.

Settings come from the environment, because BentoML and LitServe import the service module
themselves: ``PEER_MODEL`` (the ONNX file) and ``PEER_WORKERS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from product_classifier.constants import CLASS_NAMES
from product_classifier.preprocessing import preprocess_bytes


def model_path() -> Path:
    return Path(os.environ.get("PEER_MODEL", "artifacts/model.int8.onnx"))


def workers() -> int:
    return int(os.environ.get("PEER_WORKERS", "1"))


def session(path: Path | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session set up like the service's (inference/predictor.py defaults)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path or model_path()), so, providers=["CPUExecutionProvider"])


def classify(sess: ort.InferenceSession, data: bytes) -> dict[str, Any]:
    """One upload -> {category, class_id, confidence, top_k}: one model call per image."""
    x = preprocess_bytes(data)
    (logits,) = sess.run(None, {sess.get_inputs()[0].name: x})
    z = logits[0].astype(np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    top = np.argsort(probs)[::-1][:3]
    top_k = [
        {"category": CLASS_NAMES[int(i)], "class_id": int(i), "probability": float(probs[i])}
        for i in top
    ]
    return {
        "category": top_k[0]["category"],
        "class_id": top_k[0]["class_id"],
        "confidence": top_k[0]["probability"],
        "top_k": top_k,
    }

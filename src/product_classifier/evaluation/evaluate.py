"""Evaluate a model file on the Fashion-MNIST test set, the way a user of the ONNX file would.

The ONNX path uses only onnxruntime + the shared preprocessing, so its numbers are exactly what
the service will do with the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from product_classifier.constants import CLASS_NAMES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.evaluation.metrics import ClassificationMetrics, compute_metrics
from product_classifier.preprocessing import to_model_input


def onnx_logits(
    model_path: str | Path, images_uint8: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    chunks = [
        session.run(
            [ONNX_OUTPUT_NAME],
            {ONNX_INPUT_NAME: to_model_input(images_uint8[start : start + batch_size])},
        )[0]
        for start in range(0, len(images_uint8), batch_size)
    ]
    return np.concatenate(chunks)


def checkpoint_logits(
    checkpoint: str | Path, images_uint8: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    import torch

    from product_classifier.training.trainer import model_from_checkpoint, predict_logits

    model, _ = model_from_checkpoint(checkpoint)
    images = torch.from_numpy(to_model_input(images_uint8))
    return predict_logits(model, images, batch_size, torch.device("cpu")).numpy()


def evaluate_model(
    model_path: str | Path, data_dir: Path | None = None, split: str = "test"
) -> tuple[ClassificationMetrics, np.ndarray, np.ndarray]:
    """Return (metrics, predicted labels, logits) for an .onnx file or a .pt checkpoint."""
    from product_classifier.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist(split, data_dir=data_dir)  # type: ignore[arg-type]
    path = Path(model_path)
    if path.suffix == ".onnx":
        logits = onnx_logits(path, images)
    else:
        logits = checkpoint_logits(path, images)
    predictions = logits.argmax(axis=1)
    return compute_metrics(labels, predictions, CLASS_NAMES), predictions, logits

"""Evaluate a model file on its dataset's test split, the way a user of the ONNX file would.

The dataset comes from the model itself: a checkpoint carries its config, input spec and class
list; an ONNX file carries its spec and class list in its metadata and its config in the model
card beside it. A Fashion-MNIST model (no card, or a card without a folder) is evaluated on the
official 10k test images, as before. The ONNX path uses only onnxruntime + the shared
preprocessing, so its numbers are exactly what the service will do with the same images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.constants import CLASS_NAMES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.evaluation.metrics import ClassificationMetrics, compute_metrics
from product_classifier.preprocessing import FASHION_MNIST_SPEC, InputSpec, to_model_input


@dataclass(frozen=True)
class ModelData:
    """What a model was trained on: enough to rebuild its dataset's splits."""

    data: Any  # config.DataConfig (imported lazily: it pulls pydantic)
    spec: InputSpec
    class_names: tuple[str, ...]


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def model_data(model_path: str | Path, data_dir: Path | None = None) -> ModelData:
    """The data config, input spec and class list of an ``.onnx`` file or ``.pt`` checkpoint."""
    from product_classifier.inference.model_card import default_card_path, load_model_card

    path = Path(model_path)
    if path.suffix != ".onnx":
        from product_classifier.training.trainer import load_checkpoint

        return checkpoint_data(load_checkpoint(path), data_dir)
    meta = _onnx_metadata(path)
    names = tuple(json.loads(meta.get("class_names", "null")) or CLASS_NAMES)
    card_path = default_card_path(path)
    card = load_model_card(card_path) if card_path.is_file() else {}
    return _model_data(card.get("config"), InputSpec.from_metadata(meta), names, data_dir)


def checkpoint_data(checkpoint: dict[str, Any], data_dir: Path | None = None) -> ModelData:
    """:func:`model_data` of an already loaded checkpoint (it describes itself)."""
    from product_classifier.export.model_card import checkpoint_spec

    names = tuple(checkpoint.get("class_names") or CLASS_NAMES)
    return _model_data(checkpoint.get("config"), checkpoint_spec(checkpoint), names, data_dir)


def _model_data(
    config: dict[str, Any] | None,
    spec: InputSpec,
    names: tuple[str, ...],
    data_dir: Path | None,
) -> ModelData:
    from product_classifier.config import DataConfig

    raw_data = dict((config or {}).get("data") or {})
    # Fashion-MNIST's place on the training machine says nothing about this one: search anew.
    raw_data["data_dir"] = data_dir
    raw_data["subset_fraction"] = 1.0  # the test split is always whole
    return ModelData(DataConfig.model_validate(raw_data), spec, names)


def onnx_logits(
    model_path: str | Path,
    images_uint8: np.ndarray,
    batch_size: int = 1000,
    spec: InputSpec = FASHION_MNIST_SPEC,
) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    chunks = [
        session.run(
            [ONNX_OUTPUT_NAME],
            {ONNX_INPUT_NAME: to_model_input(images_uint8[start : start + batch_size], spec)},
        )[0]
        for start in range(0, len(images_uint8), batch_size)
    ]
    return np.concatenate(chunks)


def checkpoint_logits(
    checkpoint: str | Path,
    images_uint8: np.ndarray,
    batch_size: int = 1000,
    spec: InputSpec = FASHION_MNIST_SPEC,
) -> np.ndarray:
    import torch

    from product_classifier.training.trainer import model_from_checkpoint, predict_logits

    model, _ = model_from_checkpoint(checkpoint)
    images = torch.from_numpy(to_model_input(images_uint8, spec))
    return predict_logits(model, images, batch_size, torch.device("cpu")).numpy()


def model_logits(model_path: str | Path, images: np.ndarray, spec: InputSpec) -> np.ndarray:
    path = Path(model_path)
    if path.suffix == ".onnx":
        return onnx_logits(path, images, spec=spec)
    return checkpoint_logits(path, images, spec=spec)


def load_split(
    info: ModelData, split: str = "test", *, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 canonical images, labels) of one split of the model's dataset."""
    from product_classifier.data.dataset import load_dataset

    dataset = load_dataset(info.data, info.spec, splits=(split,), progress=progress)
    if dataset.class_names != info.class_names:
        raise ValueError(
            f"the data now gives the classes {list(dataset.class_names)} but the model has "
            f"{list(info.class_names)}: the folder changed since training"
        )
    return dataset.images[split], dataset.labels[split]


def evaluate_model(
    model_path: str | Path,
    data_dir: Path | None = None,
    split: str = "test",
    *,
    folder: Path | None = None,
    progress: bool = False,
) -> tuple[ClassificationMetrics, np.ndarray, np.ndarray]:
    """Return (metrics, predicted labels, logits) for an .onnx file or a .pt checkpoint.

    Default: the ``split`` of the model's own dataset. ``folder``: every picture of another
    folder instead (held-out pictures, one sub-folder per category of the model).
    """
    info = model_data(model_path, data_dir)
    if folder is not None:
        from product_classifier.data.dataset import load_eval_folder

        images, labels, _ = load_eval_folder(folder, info.spec, info.class_names, progress=progress)
    else:
        images, labels = load_split(info, split, progress=progress)
    logits = model_logits(model_path, images, info.spec)
    predictions = logits.argmax(axis=1)
    return compute_metrics(labels, predictions, info.class_names), predictions, logits

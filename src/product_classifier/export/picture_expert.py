"""Ship a picture expert beside the release: the pictures' second opinion.

``product-classifier picture-expert runs/robust-icons-small/best.pt`` exports the checkpoint to
ONNX, quantises it to INT8 and records it in the model card's ``picture_expert`` section, where
the service, the bulk CLI and the evaluation code find it (``inference/model_card.py``). It
answers nothing: its top probability only adds a review flag on real pictures, below the
pictures' policy's ``second_opinion``, which ``product-classifier review`` then chooses on the
real-picture dev part (``evaluation/review.choose_second_opinion``; 0 keeps it silent).
The checkpoint must share the release's categories and validation split; no test image is read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

EXPERT_FILE = "model.pictures.int8.onnx"


class PictureExpertError(RuntimeError):
    """The checkpoint cannot be the release's picture expert (the message says why)."""


def build_picture_expert(
    checkpoint: Path,
    *,
    model: Path = Path("artifacts/model.int8.onnx"),
    data_dir: Path | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Export + quantise ``checkpoint`` next to ``model``, score it on validation, record it."""
    from product_classifier.data.split import fashion_mnist_split
    from product_classifier.evaluation.evaluate import onnx_logits
    from product_classifier.export.cascade import split_mismatch
    from product_classifier.export.onnx_export import export_onnx
    from product_classifier.export.quantize import (
        QuantizationSettings,
        publish,
        quantize_model,
        record_section,
    )
    from product_classifier.inference.model_card import default_card_path, load_model_card
    from product_classifier.provenance import utc_now
    from product_classifier.training.trainer import model_from_checkpoint

    card_path = default_card_path(model)
    card = load_model_card(card_path)
    network, ckpt = model_from_checkpoint(checkpoint)
    names = list(ckpt["class_names"])
    released = card.get("contract", {}).get("class_names")
    if released and names != list(released):
        raise PictureExpertError(f"its categories {names} are not the release's {released}")
    data_cfg = ckpt["config"]["data"]
    problem = split_mismatch(data_cfg, card)
    if problem:
        raise PictureExpertError(
            f"its {problem}: its accuracy would be measured on images it trained on"
        )
    out = model.with_name(EXPERT_FILE)
    # quantize_model appends "+int8" to the exported file's version (once, not twice).
    version = f"{ckpt['config']['name']}-{ckpt['saved_at'][:10]}"
    candidate = out.with_name(out.name + ".candidate")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(network, Path(tmp) / "expert.onnx", model_version=version)
        # Per-tensor weight scales, as the release (docs/evidence/held-out-2026-12-07).
        quantized = quantize_model(
            fp32, candidate, QuantizationSettings(per_channel=False), data_dir=data_dir
        )
    val = fashion_mnist_split(data_cfg, data_dir)
    accuracy = float(
        (onnx_logits(candidate, val.val_images).argmax(axis=1) == val.val_labels).mean()
    )
    entry: dict[str, Any] = {
        **publish(candidate, out, write),
        "model_version": quantized.model_version,
        "role": "second opinion on real pictures: its top probability below the pictures' "
        "review policy's second_opinion flags the picture out of scope; it answers nothing",
        "architecture": ckpt["model"],
        "parameters": ckpt["parameters"],
        "config": ckpt["config"]["name"],
        "checkpoint": str(checkpoint),
        "quantization": quantized.description(),
        "validation_accuracy": accuracy,
        "created_at": utc_now(),
    }
    if write:
        record_section(card_path, "picture_expert", entry)
    return entry

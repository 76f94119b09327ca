"""Checkpoint -> released artifact: ONNX file, independent test evaluation, model card."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from product_classifier.export.model_card import build_model_card, write_model_card
from product_classifier.export.onnx_export import export_onnx, max_abs_difference

# Export agreement bar: float32 graph rewrites (constant folding, fused ops) move logits by ~1e-5.
MAX_EXPORT_DIFF = 1e-3


class ExportMismatchError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond float tolerance: the export is wrong."""


def release_checkpoint(
    checkpoint_path: Path,
    out_dir: Path = Path("artifacts"),
    *,
    tta_flip: bool | None = None,
    model_version: str | None = None,
    reports_dir: Path | None = Path("reports/release"),
    data_dir: Path | None = None,
) -> dict[str, Any]:
    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.evaluation.evaluate import evaluate_model
    from product_classifier.preprocessing import to_model_input
    from product_classifier.training.trainer import model_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint_path)
    config = ckpt["config"]
    if tta_flip is None:
        tta_flip = bool(config["train"].get("tta_flip", False))
    model_version = model_version or f"{config['name']}-{time.strftime('%Y%m%d')}"
    onnx_path = export_onnx(
        model, out_dir / "model.onnx", model_version=model_version, tta_flip=tta_flip
    )

    images, _ = load_fashion_mnist("test", data_dir=data_dir)
    diff = max_abs_difference(model, onnx_path, to_model_input(images[:256]))
    if diff > MAX_EXPORT_DIFF:
        raise ExportMismatchError(f"ONNX and PyTorch logits differ by {diff:.2e}")

    metrics, _, _ = evaluate_model(onnx_path, data_dir=data_dir)
    card = build_model_card(
        onnx_path=onnx_path,
        checkpoint=ckpt,
        test_metrics=metrics.to_dict(),
        model_version=model_version,
        tta_flip=tta_flip,
        max_abs_diff_vs_torch=diff,
    )
    write_model_card(card, out_dir / "model_card.json")
    if reports_dir is not None:
        from product_classifier.evaluation.report import write_evaluation_report

        write_evaluation_report(metrics, reports_dir, title=f"Release {model_version}")
    return card

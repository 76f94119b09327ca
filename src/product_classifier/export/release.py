"""Checkpoint -> released artifact: ONNX file, independent test evaluation, model card."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from product_classifier.data.dataset import MANIFEST_NAME
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
    from product_classifier.evaluation.evaluate import (
        checkpoint_data,
        load_split,
        model_logits,
    )
    from product_classifier.evaluation.metrics import compute_metrics
    from product_classifier.preprocessing import to_model_input
    from product_classifier.training.trainer import model_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint_path)
    config = ckpt["config"]
    info = checkpoint_data(ckpt, data_dir)
    if tta_flip is None:
        tta_flip = bool(config["train"].get("tta_flip", False))
    model_version = model_version or f"{config['name']}-{time.strftime('%Y%m%d')}"
    onnx_path = export_onnx(
        model,
        out_dir / "model.onnx",
        model_version=model_version,
        tta_flip=tta_flip,
        class_names=info.class_names,
        spec=info.spec,
    )

    # The test split, read once: the export check and the card's metrics both use it.
    images, labels = load_split(info, "test", progress=True)
    diff = max_abs_difference(model, onnx_path, to_model_input(images[:256], info.spec))
    if diff > MAX_EXPORT_DIFF:
        raise ExportMismatchError(f"ONNX and PyTorch logits differ by {diff:.2e}")

    logits = model_logits(onnx_path, images, info.spec)
    metrics = compute_metrics(labels, logits.argmax(axis=1), info.class_names)
    card = build_model_card(
        onnx_path=onnx_path,
        checkpoint=ckpt,
        test_metrics=metrics.to_dict(),
        model_version=model_version,
        tta_flip=tta_flip,
        max_abs_diff_vs_torch=diff,
    )
    write_model_card(card, out_dir / "model_card.json")
    manifest = Path(checkpoint_path).with_name(MANIFEST_NAME)
    if manifest.is_file() and out_dir.resolve() != manifest.parent.resolve():
        # The split behind the card's metrics travels with the model (the card pins its hash).
        shutil.copyfile(manifest, out_dir / MANIFEST_NAME)
    if reports_dir is not None:
        from product_classifier.evaluation.report import write_evaluation_report

        write_evaluation_report(metrics, reports_dir, title=f"Release {model_version}")
    return card

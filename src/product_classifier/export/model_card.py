"""The model card: everything needed to trust, reproduce and serve a released model file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from product_classifier.constants import CLASS_NAMES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.preprocessing import FASHION_MNIST_SPEC, InputSpec
from product_classifier.provenance import library_versions, sha256_file, utc_now

CARD_FORMAT = 1


def onnx_file_entry(path: Path, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "metrics": metrics,
    }


def build_model_card(
    *,
    onnx_path: Path,
    checkpoint: dict[str, Any],
    test_metrics: dict[str, Any],
    model_version: str,
    tta_flip: bool,
    max_abs_diff_vs_torch: float,
) -> dict[str, Any]:
    history = checkpoint.get("history", [])
    class_names = list(checkpoint.get("class_names") or CLASS_NAMES)
    spec = checkpoint_spec(checkpoint)
    is_fashion_mnist = spec == FASHION_MNIST_SPEC and class_names == list(CLASS_NAMES)
    return {
        "card_format": CARD_FORMAT,
        "name": "product-classifier",
        "model_version": model_version,
        "created_at": utc_now(),
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "architecture": checkpoint["model"],
        "parameters": checkpoint["parameters"],
        "contract": {
            "input": {
                "name": ONNX_INPUT_NAME,
                "dtype": "float32",
                "shape": ["N", *spec.item_shape],
                "range": [0.0, 1.0],
                "orientation": (
                    "bright item on dark background (Fashion-MNIST bytes / 255)"
                    if spec == FASHION_MNIST_SPEC
                    else "the photo's own colours, letterboxed on a white page"
                ),
                "spec": spec.to_dict(),
            },
            "output": {
                "name": ONNX_OUTPUT_NAME,
                "dtype": "float32",
                "shape": ["N", len(class_names)],
            },
            "class_names": class_names,
            "tta_flip_in_graph": tta_flip,
        },
        "metrics": {"test": test_metrics},
        "validation": {
            "onnx_vs_torch_max_abs_logit_diff": max_abs_diff_vs_torch,
        },
        "training": {
            "best_epoch": checkpoint.get("best_epoch"),
            "epochs_run": len(history),
            "best_val_accuracy": checkpoint.get("best_val_accuracy"),
            "wall_seconds": checkpoint.get("wall_seconds"),
            "device": checkpoint.get("device"),
            "world_size": checkpoint.get("world_size"),
            "seconds_per_epoch": (
                sum(h["epoch_seconds"] for h in history) / len(history) if history else None
            ),
            "history": history,
        },
        "data": data_section(checkpoint, is_fashion_mnist),
        "transfer": checkpoint.get("transfer"),
        "config": checkpoint.get("config"),
        "versions": {"training": checkpoint.get("versions"), "export": library_versions()},
        "git_sha": checkpoint.get("git_sha"),
        "intended_use": (
            "Routing product photos of apparel, shoes and bags into 10 coarse catalog "
            "categories, with a confidence score and a needs-review flag for a human check."
            if is_fashion_mnist
            else f"Routing product photos into the catalog's {len(class_names)} categories "
            f"({', '.join(class_names)}), with a confidence score and a needs-review flag."
        ),
        "limitations": (
            [
                "Trained on 28x28 grayscale Fashion-MNIST: colour and fine texture are discarded.",
                "Items outside the 10 categories still get one of the 10 labels; use needs_review.",
                "Shirt vs T-shirt/top vs Pullover vs Coat is the weakest distinction.",
            ]
            if is_fashion_mnist
            else [
                "Measured on the catalog's own held-out pictures only (metrics.test): "
                "pictures of another style or source may score lower.",
                "Items outside these categories still get one of them; use needs_review.",
            ]
        ),
    }


def checkpoint_spec(checkpoint: dict[str, Any]) -> InputSpec:
    raw = checkpoint.get("input_spec")
    return InputSpec.from_dict(raw) if isinstance(raw, dict) else FASHION_MNIST_SPEC


def data_section(checkpoint: dict[str, Any], is_fashion_mnist: bool) -> dict[str, Any]:
    """What the model learnt from: checksums, the split rule, and the split manifest's hash."""
    config_data = (checkpoint.get("config") or {}).get("data") or {}
    section: dict[str, Any] = {
        "dataset": (
            "Fashion-MNIST (Xiao et al. 2017)"
            if is_fashion_mnist and not config_data.get("folder")
            else "catalog folder" + (" + Fashion-MNIST" if config_data.get("fashion_mnist") else "")
        ),
        "payload_sha256": checkpoint.get("data_checksums"),
    }
    if config_data.get("folder"):
        section["folder"] = config_data["folder"]
        section["split"] = {
            "rule": "your own train/val/test folders where given, else stratified and seeded: "
            f"test {config_data.get('test_fraction')}, val {config_data.get('val_fraction')}, "
            f"seed {config_data.get('split_seed')}",
            "test": "the test split, used only for this evaluation",
        }
    else:
        section["split"] = {
            "train_validation": "stratified, seeded split of the 60k training images",
            "test": "the official 10k test images, used only for this evaluation",
        }
    if checkpoint.get("data_manifest"):
        section["manifest"] = checkpoint["data_manifest"]
    return section


def write_model_card(card: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path

"""Static INT8 post-training quantisation of the released ONNX model (onnxruntime.quantization).

Pipeline: ``quant_pre_process`` (shape inference + graph clean-up, as onnxruntime recommends)
-> calibrate activation ranges on TRAINING images (never the test set: the test numbers we
report must stay unseen) -> QDQ graph with per-channel int8 weights and uint8 activations ->
the FP32 file's metadata (``class_names`` ...) with ``model_version`` + ``"+int8"``. Input and
output stay float32 with the same names and shapes, so the service and clients see no change.

A quantised file is only released when it passes :func:`check_quality` against the FP32 model
on the 10k test set (accuracy drop and the per-class precision/recall bar).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from product_classifier.constants import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME

if TYPE_CHECKING:
    import onnx

    from product_classifier.evaluation.evaluate import ModelData
    from product_classifier.evaluation.metrics import ClassificationMetrics

CalibrationMethodName = Literal["minmax", "entropy", "percentile"]
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")

# Aliases accepted by ``exclude``: the layers that usually hurt most when quantised (the stem
# sees raw pixels, the classifier produces the logits); anything else is taken as a node name.
FIRST_CONV = "first-conv"
LAST_GEMM = "last-gemm"

INT8_SUFFIX = "+int8"
VARIANT_NAME = "int8"
# Release gate (issue #4): at most 0.3 percentage points of accuracy lost vs FP32; the
# per-class precision/recall bar is the project-wide QUALITY_BAR (0.85).
MAX_ACCURACY_DROP_PP = 0.3
# Calibration runs an augmented graph that outputs every activation; histogram methods keep
# all of them until the chunk ends, so chunks are capped (~3 MB of activations per image).
_MAX_IMAGES_PER_CHUNK = 256


@dataclass(frozen=True)
class QuantizationSettings:
    """Everything that determines the INT8 file (recorded in its metadata and the card)."""

    # Defaults = the released artifacts/model.int8.onnx (chosen in docs/benchmarks.md).
    method: CalibrationMethodName = "percentile"
    calibration_size: int = 1000
    seed: int = 0
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    percentile: float = 99.999  # only for method="percentile"
    batch_size: int = 50
    # Keep the op that produces the logits from re-quantising its output: uint8 logits would
    # round the confidences the service reports (and can tie the top-2 classes).
    float_logits: bool = True

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {self.method!r}")
        if self.calibration_size < 1 or self.batch_size < 1:
            raise ValueError("calibration_size and batch_size must be >= 1")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exclude"] = list(self.exclude)
        if self.method != "percentile":
            del data["percentile"]
        return data


@dataclass(frozen=True)
class QuantizedModel:
    path: Path
    settings: QuantizationSettings
    excluded_nodes: tuple[str, ...]
    model_version: str
    calibration_split: str = "train"
    details: dict[str, Any] = field(default_factory=dict)
    calibration_source: str = "Fashion-MNIST"
    calibration_images: int | None = None  # fewer than calibration_size for a small catalog

    def description(self) -> dict[str, Any]:
        """What the card and the file's metadata record about how it was made."""
        import onnxruntime as ort

        return {
            "format": "QDQ",
            "weights": "int8, per-channel" if self.settings.per_channel else "int8, per-tensor",
            "activations": "uint8, per-tensor (asymmetric)",
            "calibration_data": (
                f"{self.calibration_images or self.settings.calibration_size} stratified "
                f"{self.calibration_source} {self.calibration_split} images (seed "
                f"{self.settings.seed}); never the test set"
            ),
            "excluded_nodes": list(self.excluded_nodes),
            "settings": self.settings.to_dict(),
            "onnxruntime": ort.__version__,
            **self.details,
        }


class _ImageReader:
    """CalibrationDataReader over float32 [N, 1, 28, 28] images, in batches, with set_range.

    ``len()`` counts batches; onnxruntime's strided calibration calls ``set_range`` per chunk.
    """

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self._images = images
        self._batch = batch_size
        self._n_batches = math.ceil(len(images) / batch_size)
        self._range = (0, self._n_batches)
        self._next = 0

    def __len__(self) -> int:
        return self._n_batches

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, self._n_batches))
        self._next = start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._range[1]:
            return None
        lo = self._next * self._batch
        self._next += 1
        return {ONNX_INPUT_NAME: self._images[lo : lo + self._batch]}

    def rewind(self) -> None:
        self._next = self._range[0]


def _chunk_batches(n_batches: int, batch_size: int) -> int:
    """Largest divisor of ``n_batches`` whose chunk stays under the memory cap (onnxruntime
    requires the stride to divide the number of batches)."""
    cap = max(1, _MAX_IMAGES_PER_CHUNK // batch_size)
    return max(d for d in range(1, min(cap, n_batches) + 1) if n_batches % d == 0)


def calibration_images(size: int, seed: int, info: ModelData) -> np.ndarray:
    """``size`` stratified TRAINING images of the model's dataset (``info``), as model input
    (float32 [N, C, S, S] in [0, 1]); a catalog smaller than ``size`` gives all it has."""
    from product_classifier.data.split import stratified_subset
    from product_classifier.evaluation.evaluate import load_split
    from product_classifier.preprocessing import to_model_input

    images, labels = load_split(info, "train")
    if size > len(images):
        if info.data.folder is None:
            raise ValueError(f"calibration_size {size} exceeds the {len(images)} training images")
        size = len(images)
    idx = stratified_subset(labels, size / len(labels), seed)
    return to_model_input(images[idx], info.spec)


def resolve_excluded_nodes(model: onnx.ModelProto, exclude: tuple[str, ...]) -> tuple[str, ...]:
    """Map ``first-conv`` / ``last-gemm`` aliases to node names; check that names exist."""
    names = [node.name for node in model.graph.node]
    resolved: list[str] = []
    for item in exclude:
        if item in (FIRST_CONV, LAST_GEMM):
            op = "Conv" if item == FIRST_CONV else "Gemm"
            found = [n.name for n in model.graph.node if n.op_type == op]
            if not found:
                raise ValueError(f"--exclude {item}: the model has no {op} node")
            resolved.append(found[0] if item == FIRST_CONV else found[-1])
        elif item in names:
            resolved.append(item)
        else:
            raise ValueError(
                f"--exclude {item!r}: no such node (nor an alias {FIRST_CONV}, {LAST_GEMM})"
            )
    return tuple(dict.fromkeys(resolved))


def _io_signature(model: onnx.ModelProto) -> list[tuple[str, int, int]]:
    """(name, elem_type, rank) of inputs and outputs; dims are checked by the predictor."""
    return [
        (v.name, v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim))
        for v in [*model.graph.input, *model.graph.output]
    ]


def _finish(
    quantized: onnx.ModelProto, source: onnx.ModelProto, result: QuantizedModel
) -> onnx.ModelProto:
    """Restore the contract: FP32 metadata (+ version suffix, + how it was made), same I/O."""
    from onnx import helper

    if _io_signature(quantized) != _io_signature(source):
        raise RuntimeError(
            f"quantisation changed the I/O contract: {_io_signature(source)} -> "
            f"{_io_signature(quantized)}"
        )
    names = {v.name for v in [*quantized.graph.input, *quantized.graph.output]}
    if names != {ONNX_INPUT_NAME, ONNX_OUTPUT_NAME}:
        raise RuntimeError(f"unexpected I/O names after quantisation: {sorted(names)}")
    # The batch axis must stay symbolic (micro-batching); restore the source's dims exactly.
    for dst, src in zip(
        [*quantized.graph.input, *quantized.graph.output],
        [*source.graph.input, *source.graph.output],
        strict=True,
    ):
        dst.type.CopyFrom(src.type)
    # quant_pre_process declares every onnxruntime domain; keep only the ones nodes use.
    used = {node.domain for node in quantized.graph.node} | {""}
    kept = [op for op in quantized.opset_import if op.domain in used]
    del quantized.opset_import[:]
    quantized.opset_import.extend(kept)
    metadata = {p.key: p.value for p in source.metadata_props}
    metadata["model_version"] = result.model_version
    metadata["quantization"] = json.dumps(result.description(), sort_keys=True)
    del quantized.metadata_props[:]
    helper.set_model_props(quantized, metadata)
    quantized.producer_name = source.producer_name or quantized.producer_name
    quantized.doc_string = (source.doc_string + "\n" if source.doc_string else "") + (
        "INT8 (QDQ) post-training quantisation of the FP32 model."
    )
    return quantized


def quantize_model(
    model_path: str | Path,
    out_path: str | Path,
    settings: QuantizationSettings | None = None,
    *,
    images: np.ndarray | None = None,
    data_dir: str | Path | None = None,
    calibration_cache: str | Path | None = None,
) -> QuantizedModel:
    """Quantise ``model_path`` to ``out_path`` (written atomically) and describe the result.

    ``images``: float32 [N, 1, 28, 28] calibration inputs; default: ``settings.calibration_size``
    stratified training images. ``calibration_cache``: a JSON file of activation ranges that
    onnxruntime reuses when it exists (same method and data) and writes otherwise.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    settings = settings or QuantizationSettings()
    model_path, out_path = Path(model_path), Path(out_path)
    source = onnx.load(str(model_path))
    from product_classifier.evaluation.evaluate import model_data

    # What the model learnt from (its card's data config): the calibration set, and its name.
    info = model_data(model_path, Path(data_dir) if data_dir else None)
    calibration_source = "Fashion-MNIST" if info.data.folder is None else "catalog"
    if images is None:
        images = calibration_images(settings.calibration_size, settings.seed, info)
    images = np.ascontiguousarray(images, dtype=np.float32)
    # Every calibration batch must have the same shape (onnxruntime stacks them): a small
    # catalog gets one batch of all its images, a larger set drops the ragged tail.
    batch_size = min(settings.batch_size, len(images))
    images = images[: len(images) // batch_size * batch_size]
    version = next((p.value for p in source.metadata_props if p.key == "model_version"), "")
    if not version:
        raise ValueError(f"{model_path}: metadata 'model_version' is missing")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[settings.method]

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        raw = Path(tmp) / "int8.onnx"
        quant_pre_process(str(model_path), str(pre))
        pre_model = onnx.load(str(pre))
        excluded = resolve_excluded_nodes(pre_model, settings.exclude)
        reader = _ImageReader(images, batch_size)
        extra_options: dict[str, Any] = {
            "CalibStridedMinMax": _chunk_batches(len(reader), batch_size),
            "CalibPercentile": settings.percentile,
        }
        if settings.float_logits:
            extra_options["OpTypesToExcludeOutputQuantization"] = [
                n.op_type for n in pre_model.graph.node if ONNX_OUTPUT_NAME in n.output
            ]
        quantize_static(
            str(pre),
            str(raw),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=list(excluded),
            calibration_cache_path=calibration_cache,
            extra_options=extra_options,
        )
        result = QuantizedModel(
            path=out_path,
            settings=settings,
            excluded_nodes=excluded,
            model_version=version + INT8_SUFFIX,
            calibration_source=calibration_source,
            calibration_images=len(images),
        )
        quantized = _finish(onnx.load(str(raw)), source, result)
        onnx.checker.check_model(quantized)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(out_path.name + ".partial")
        onnx.save(quantized, str(partial))
        os.replace(partial, out_path)
    return result


# -- evaluation and release --------------------------------------------------------------------


def check_quality(
    candidate: ClassificationMetrics,
    reference: ClassificationMetrics,
    *,
    max_drop_pp: float = MAX_ACCURACY_DROP_PP,
    bar: float | None = None,
) -> list[str]:
    """Problems that block releasing ``candidate`` (empty list: it may ship)."""
    from product_classifier.evaluation.metrics import QUALITY_BAR

    bar = QUALITY_BAR if bar is None else bar
    problems = []
    drop_pp = (reference.accuracy - candidate.accuracy) * 100.0
    if drop_pp > max_drop_pp + 1e-9:
        problems.append(
            f"accuracy {candidate.accuracy:.4f} is {drop_pp:.2f} pp below FP32 "
            f"{reference.accuracy:.4f} (at most {max_drop_pp} pp allowed)"
        )
    for c in candidate.failing_classes(bar):
        problems.append(
            f"class {c.name!r}: precision {c.precision:.3f} / recall {c.recall:.3f} "
            f"(both must be >= {bar})"
        )
    return problems


def top1_agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Share of rows whose argmax is the same in both."""
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"shapes differ: {logits_a.shape} vs {logits_b.shape}")
    return float(np.mean(logits_a.argmax(axis=1) == logits_b.argmax(axis=1)))


def variant_entry(
    result: QuantizedModel,
    *,
    metrics: ClassificationMetrics,
    reference: ClassificationMetrics,
    agreement: float,
) -> dict[str, Any]:
    """The card's ``variants.int8`` entry: file, hash, size, test metrics, settings."""
    from product_classifier.provenance import sha256_file, utc_now

    path = result.path
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "model_version": result.model_version,
        "created_at": utc_now(),
        "quantization": result.description(),
        "metrics": {"test": metrics.to_dict()},
        "vs_fp32": {
            "accuracy_drop_pp": round((reference.accuracy - metrics.accuracy) * 100.0, 4),
            "top1_agreement": agreement,
            "fp32_accuracy": reference.accuracy,
        },
    }


def record_variant(card_path: str | Path, name: str, entry: dict[str, Any]) -> None:
    """Set ``card["variants"][name]``; every other key of the card is left as it was."""
    path = Path(card_path)
    card = json.loads(path.read_text(encoding="utf-8"))
    card.setdefault("variants", {})[name] = entry
    _write_card(path, card)


def publish(candidate: Path, out: Path, write: bool) -> dict[str, Any]:
    """A checked candidate file moved into place as ``out`` (``write``), or dropped (a dry
    run); returns its card fields: file name, sha256 and size (None in a dry run)."""
    from product_classifier.provenance import sha256_file

    if not write:
        candidate.unlink()
        return {"file": out.name, "sha256": None, "size_bytes": None}
    candidate.replace(out)
    return {"file": out.name, "sha256": sha256_file(out), "size_bytes": out.stat().st_size}


def record_section(card_path: str | Path, key: str, entry: dict[str, Any]) -> None:
    """Set ``card[key]`` (e.g. the serving ``cascade``); the rest of the card is kept."""
    path = Path(card_path)
    card = json.loads(path.read_text(encoding="utf-8"))
    card[key] = entry
    _write_card(path, card)


def _write_card(path: Path, card: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(partial, path)

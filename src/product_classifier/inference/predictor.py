"""ONNX Runtime predictor for the exported classifier (no torch).

The model must follow the ONNX contract (see ``product_classifier.constants``): input ``image``
float32 [N, C, S, S] with a dynamic batch axis, as its metadata ``input_spec`` says (none: a
Fashion-MNIST model, [N, 1, 28, 28]), output ``logits`` float32 [N, K], metadata
``class_names`` (a JSON list of K names) and ``model_version``. It is checked once at load so
that a wrong model fails at startup with a clear message instead of on the first request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from product_classifier.constants import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.inference.errors import ModelLoadError
from product_classifier.preprocessing import InputSpec, InputSpecError

logger = logging.getLogger(__name__)

# Best first; whatever this onnxruntime build lacks is skipped.
PREFERRED_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
CPU_PROVIDER = "CPUExecutionProvider"

ExecutionMode = Literal["sequential", "parallel"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]

_EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}
_GRAPH_OPTIMIZATIONS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class PredictorOptions:
    """onnxruntime session settings.

    One intra-op thread is the default because the service scales with processes and batches
    requests; more threads per process mostly add contention on a small CPU.
    ``providers=None`` means "best available" (``PREFERRED_PROVIDERS``).
    ``allow_spinning`` (only matters with more than one intra-op thread): idle pool threads
    busy-wait for the next op; off, because in the service they would burn the cores that
    decode uploads. Measured in docs/benchmarks.md.
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    execution_mode: ExecutionMode = "sequential"
    graph_optimization: GraphOptimization = "all"
    providers: tuple[str, ...] | None = None
    allow_spinning: bool = False


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """Keep the requested providers this build has, in order, always ending with CPU.

    Missing providers are logged: at WARNING when asked for explicitly (the operator expected
    them), at INFO for the automatic preference list (a CPU-only host is normal).
    """
    explicit = requested is not None
    wanted = list(requested) if requested is not None else list(PREFERRED_PROVIDERS)
    available = set(ort.get_available_providers())
    chosen = [name for name in dict.fromkeys(wanted) if name in available]
    missing = [name for name in dict.fromkeys(wanted) if name not in available]
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)
    if missing:
        log = logger.warning if explicit else logger.info
        log(
            "onnxruntime providers not available in this build: %s; using %s",
            ", ".join(missing),
            ", ".join(chosen),
        )
    return chosen


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis; returns a new float32 array."""
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(axis=-1, keepdims=True)  # new array: the caller's logits stay untouched
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _session_options(options: PredictorOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = _EXECUTION_MODES[options.execution_mode]
    so.graph_optimization_level = _GRAPH_OPTIMIZATIONS[options.graph_optimization]
    spin = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


def _parse_class_names(raw: str | None, path: Path) -> tuple[str, ...]:
    if raw is None:
        raise ModelLoadError(f"{path}: metadata 'class_names' is missing (the contract needs it)")
    try:
        names = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: metadata 'class_names' is not valid JSON: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(
            f"{path}: metadata 'class_names' must be a JSON list of non-empty strings"
        )
    if len(names) < 2:
        raise ModelLoadError(f"{path}: metadata 'class_names' needs at least 2 categories")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{path}: metadata 'class_names' has duplicates: {names}")
    return tuple(names)


class OnnxPredictor:
    """A validated onnxruntime session. ``run`` is thread-safe, so one instance is shared."""

    def __init__(
        self,
        model_path: str | Path,
        options: PredictorOptions | None = None,
        *,
        expected_class_names: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(model_path)
        self.options = options or PredictorOptions()
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        providers = resolve_providers(self.options.providers)
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=_session_options(self.options), providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own, undocumented exception types
            raise ModelLoadError(
                f"{self.path}: onnxruntime could not load the model (corrupt or not ONNX?): {exc}"
            ) from exc
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        if self.providers[0] != providers[0]:
            # Listed as available but failed to initialise (e.g. CUDA libraries missing).
            logger.warning(
                "onnxruntime could not initialise %s; running on %s",
                providers[0],
                ", ".join(self.providers),
            )
        meta = self._session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        try:
            self.spec = InputSpec.from_metadata(meta)
        except InputSpecError as exc:
            raise ModelLoadError(f"{self.path}: metadata 'input_spec' is invalid: {exc}") from exc
        self._input_shape = self.spec.item_shape
        self.class_names = _parse_class_names(meta.get("class_names"), self.path)
        if expected_class_names is not None and self.class_names != tuple(expected_class_names):
            raise ModelLoadError(
                f"{self.path}: metadata 'class_names' {list(self.class_names)} differ from "
                f"the expected {list(expected_class_names)}"
            )
        self._check_io(len(self.class_names))
        version = meta.get("model_version")
        if not version:
            logger.warning("%s: metadata 'model_version' is missing; using 'unknown'", self.path)
        self.model_version: str = version or "unknown"

    def _check_io(self, num_classes: int) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != ONNX_INPUT_NAME:
            names = [i.name for i in inputs]
            raise ModelLoadError(
                f"{self.path}: expected exactly one input named {ONNX_INPUT_NAME!r}, got {names}"
            )
        inp = inputs[0]
        if inp.type != "tensor(float)":
            raise ModelLoadError(
                f"{self.path}: input {inp.name!r} must be tensor(float) (float32), got {inp.type}"
            )
        shape = list(inp.shape)
        if len(shape) != 4 or tuple(shape[1:]) != self._input_shape:
            expected = ", ".join(str(d) for d in self._input_shape)
            raise ModelLoadError(
                f"{self.path}: input {inp.name!r} must have shape [N, {expected}] (its input "
                f"spec: {self.spec.to_json()}), got {shape}"
            )
        if isinstance(shape[0], int):
            # A fixed batch size would break micro-batching; the contract says dynamic.
            raise ModelLoadError(
                f"{self.path}: input {inp.name!r} needs a dynamic batch axis, got {shape[0]}"
            )
        outputs = {o.name: o for o in self._session.get_outputs()}
        out = outputs.get(ONNX_OUTPUT_NAME)
        if out is None:
            raise ModelLoadError(
                f"{self.path}: expected an output named {ONNX_OUTPUT_NAME!r}, got {sorted(outputs)}"
            )
        out_shape = list(out.shape)
        if out.type != "tensor(float)" or len(out_shape) != 2 or out_shape[1] != num_classes:
            raise ModelLoadError(
                f"{self.path}: output {out.name!r} must be float32 [N, {num_classes}] (one "
                f"logit per name in 'class_names'), got {out.type} {out_shape}"
            )
        self._output_names = [ONNX_OUTPUT_NAME]

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, C, S, S] in [0, 1] -> float32 logits [N, K]."""
        if batch.dtype != np.float32 or not batch.flags.c_contiguous:
            batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self._input_shape:
            raise ValueError(
                f"expected a batch of shape [N, {', '.join(map(str, self._input_shape))}], "
                f"got {batch.shape}"
            )
        logits: np.ndarray = self._session.run(self._output_names, {ONNX_INPUT_NAME: batch})[0]
        return logits

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, C, S, S] in [0, 1] -> class probabilities [N, K]."""
        return softmax(self.predict_logits(batch))

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run dummy batches so that the first real requests don't pay for allocations."""
        for size in batch_sizes:
            self.predict_logits(np.zeros((size, *self._input_shape), dtype=np.float32))

    def runtime_info(self) -> dict[str, Any]:
        """What the service reports under ``GET /v1/model``."""
        return {
            "model_path": str(self.path),
            "model_version": self.model_version,
            "input_spec": self.spec.to_dict(),
            "providers": list(self.providers),
            "onnxruntime_version": ort.__version__,
            "intra_op_threads": self.options.intra_op_threads,
            "inter_op_threads": self.options.inter_op_threads,
            "execution_mode": self.options.execution_mode,
            "graph_optimization": self.options.graph_optimization,
            "allow_spinning": self.options.allow_spinning,
        }

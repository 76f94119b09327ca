"""Inference benchmark: PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8, in one run.

Each (runtime, threads) cell runs in a fresh subprocess (``inference_worker``) so that load
time and peak RSS belong to that runtime alone. Cells are interleaved round-robin for
``repeats`` rounds and every figure is the median over rounds: other jobs on a shared machine
then slow all runtimes alike, and the ratios within one run stay meaningful. Load averages are
recorded with every cell.

``run_session_sweep`` measures onnxruntime session settings instead (threads, spinning,
execution mode, online vs offline graph optimisation) on both ONNX files, the same way; it
writes its own section, so the two can be rerun independently.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import child_env
from benchmarks.inference_report import cpu_info, render_blocks

WORKER_MODULE = "benchmarks.inference_worker"
DEFAULT_FP32 = Path("artifacts/model.onnx")
DEFAULT_INT8 = Path("artifacts/model.int8.onnx")
DEFAULT_CHECKPOINT = Path("runs/release/best.pt")
DEFAULT_GPU_JSON = Path("docs/evidence/gpu-2026-11-26/gpu_torch_benchmark.json")
TARGET_INT8_SIZE_RATIO = 1 / 3
TARGET_INT8_P50_MS = 1.0


@dataclass(frozen=True)
class BenchmarkConfig:
    threads: tuple[int, ...] = (1, 2)
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    latency_iters: int = 200
    warmup_iters: int = 20
    throughput_images: int = 256
    throughput_min_iters: int = 2
    # Time cap per measurement (latency loop, each batch size): bounds a cell's duration when
    # other jobs slow the machine down; fewer calls are then recorded (see "iters").
    max_s: float = 3.0
    repeats: int = 3
    smoke: bool = False
    worker_timeout_s: float = 300.0

    @classmethod
    def smoke_config(cls) -> BenchmarkConfig:
        """A few iterations of everything: checks the machinery in seconds, not the speed."""
        return cls(
            threads=(1,),
            batch_sizes=(1, 8),
            latency_iters=5,
            warmup_iters=1,
            throughput_images=8,
            throughput_min_iters=1,
            max_s=0.5,
            repeats=1,
            smoke=True,
            worker_timeout_s=120.0,
        )


@dataclass(frozen=True)
class Runtime:
    key: str  # "torch", "onnx-fp32", "onnx-int8"
    label: str
    kind: str  # "torch" or "onnx"
    path: Path


@dataclass(frozen=True)
class Cell:
    runtime: Runtime
    threads: int
    options: dict[str, Any] = field(default_factory=dict)  # onnxruntime session settings

    def worker_spec(self, config: BenchmarkConfig, batch_sizes: tuple[int, ...]) -> dict[str, Any]:
        return {
            "kind": self.runtime.kind,
            "model_path": str(self.runtime.path),
            "threads": self.threads,
            "batch_sizes": list(batch_sizes),
            "latency_iters": config.latency_iters,
            "warmup_iters": config.warmup_iters,
            "throughput_images": config.throughput_images,
            "throughput_min_iters": config.throughput_min_iters,
            "max_s": config.max_s,
            **self.options,
        }


class WorkerError(RuntimeError):
    """A benchmark subprocess failed; the message carries its stderr tail."""


def run_worker(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    env = child_env()
    # torch/OpenMP read these at import; onnxruntime uses the session options instead.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec["threads"])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", WORKER_MODULE, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WorkerError(
            f"benchmark worker for {spec['model_path']} ({spec['threads']} thread(s)) took "
            f"more than {timeout_s:.0f} s"
        ) from None
    if proc.returncode != 0:
        raise WorkerError(
            f"benchmark worker for {spec['model_path']} exited with {proc.returncode}: "
            f"{proc.stderr.strip()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _median_tree(samples: list[Any]) -> Any:
    """Median of numbers leaf by leaf across identically shaped results; others from the first."""
    first = samples[0]
    if isinstance(first, dict):
        return {k: _median_tree([s[k] for s in samples]) for k in first}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    return statistics.median(samples)


def _measure(
    cells: list[Cell],
    config: BenchmarkConfig,
    batch_sizes: tuple[int, ...],
    progress: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[float]]:
    """Median result per cell over ``config.repeats`` interleaved rounds; load averages seen."""
    rounds: list[list[dict[str, Any]]] = [[] for _ in cells]
    loads: list[float] = []
    for r in range(config.repeats):
        order = list(range(len(cells)))
        order = order[r % len(order) :] + order[: r % len(order)]  # rotate the start each round
        for i in order:
            cell = cells[i]
            progress(
                f"round {r + 1}/{config.repeats}: {cell.runtime.label}, {cell.threads} thread(s)"
                + (f", {cell.options}" if cell.options else "")
            )
            result = run_worker(cell.worker_spec(config, batch_sizes), config.worker_timeout_s)
            loads += [result["loadavg_before"][0], result["loadavg_after"][0]]
            rounds[i].append(result)
    merged = []
    for samples in rounds:
        cell_result = _median_tree(samples)
        cell_result["rounds"] = len(samples)
        cell_result["p50_ms_per_round"] = [s["latency_batch1"]["p50_ms"] for s in samples]
        merged.append(cell_result)
    return merged, loads


def _runtimes(
    fp32: Path, int8: Path | None, checkpoint: Path | None
) -> tuple[list[Runtime], list[dict[str, Any]]]:
    """Runtimes to measure, and the skipped ones with the reason."""
    available: list[Runtime] = []
    skipped: list[dict[str, Any]] = []
    candidates = [
        ("torch", "PyTorch eager FP32", "torch", checkpoint),
        ("onnx-fp32", "ONNX Runtime FP32", "onnx", fp32),
        ("onnx-int8", "ONNX Runtime INT8", "onnx", int8),
    ]
    for key, label, kind, path in candidates:
        reason = None
        if path is None:
            reason = "not requested"
        elif not path.is_file():
            reason = f"{path} not found"
        elif kind == "torch" and not _has_module("torch"):
            reason = "torch is not installed (serving-only environment)"
        if reason:
            skipped.append({"key": key, "label": label, "file": str(path), "skipped": reason})
        else:
            assert path is not None
            available.append(Runtime(key, label, kind, path))
    return available, skipped


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _versions(with_torch: bool) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("onnxruntime", "numpy") + (("torch",) if with_torch else ()):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _targets(runtimes: list[dict[str, Any]], config: BenchmarkConfig) -> list[str]:
    by_key = {rt["key"]: rt for rt in runtimes if not rt.get("skipped")}
    fp32, int8 = by_key.get("onnx-fp32"), by_key.get("onnx-int8")
    if not (fp32 and int8):
        return ["INT8 vs FP32 targets not evaluated: one of the ONNX files is missing."]
    t = str(min(config.threads))
    f_cell, i_cell = fp32["cells"][t], int8["cells"][t]
    ratio = i_cell["size_bytes"] / f_cell["size_bytes"]
    lines = [
        f"INT8 size <= 1/3 of FP32: {i_cell['size_bytes'] / 1e6:.2f} MB / "
        f"{f_cell['size_bytes'] / 1e6:.2f} MB = {ratio:.3f} "
        f"-> {'met' if ratio <= TARGET_INT8_SIZE_RATIO else 'NOT met'}",
    ]
    p50 = int8["cells"].get("1", {}).get("latency_batch1", {}).get("p50_ms")
    if p50 is not None:
        lines.append(
            f"INT8 batch-1 p50 <= {TARGET_INT8_P50_MS:g} ms on one thread: {p50:.2f} ms "
            f"-> {'met' if p50 <= TARGET_INT8_P50_MS else 'NOT met'}"
        )
    for threads in config.threads:
        f_c, i_c = fp32["cells"][str(threads)], int8["cells"][str(threads)]
        speedups = [f_c["latency_batch1"]["p50_ms"] / i_c["latency_batch1"]["p50_ms"]] + [
            i_c["throughput"][str(bs)]["images_per_s"] / f_c["throughput"][str(bs)]["images_per_s"]
            for bs in config.batch_sizes
        ]
        # The same in CPU time: insensitive to how often other jobs preempted each cell.
        cpu_speedups = [
            f_c["latency_batch1"]["cpu_p50_ms"] / i_c["latency_batch1"]["cpu_p50_ms"]
        ] + [
            i_c["throughput"][str(bs)]["images_per_cpu_s"]
            / f_c["throughput"][str(bs)]["images_per_cpu_s"]
            for bs in config.batch_sizes
        ]
        worst = min(speedups + cpu_speedups)

        def fmt(values: list[float]) -> str:
            return f"batch-1 p50 x{values[0]:.2f}, throughput " + ", ".join(
                f"@{bs} x{v:.2f}" for bs, v in zip(config.batch_sizes, values[1:], strict=True)
            )

        lines.append(
            f"INT8 no worse than FP32 at {threads} thread(s): speed-up in wall time "
            f"{fmt(speedups)}; in CPU time {fmt(cpu_speedups)} "
            f"-> {'met' if worst >= 1.0 else 'NOT met'}"
        )
    return lines


def save_optimized_model(source: Path, target: Path, level: str = "extended") -> Path:
    """Let onnxruntime write the graph it would run (offline optimisation) to ``target``."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
    return target


# (label, threads, session options) of the session sweep; the first row is the shipped default.
SESSION_SETTINGS: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("intra 1, inter 1, sequential, no spinning (default)", 1, {}),
    ("intra 1, spinning on", 1, {"allow_spinning": True}),
    ("intra 2, spinning off", 2, {}),
    ("intra 2, spinning on", 2, {"allow_spinning": True}),
    ("intra 2, inter 2, parallel, spinning off", 2,
     {"inter_op_threads": 2, "execution_mode": "parallel"}),
    ("intra 1, online graph opt basic", 1, {"graph_optimization": "basic"}),
    ("intra 1, online graph opt extended", 1, {"graph_optimization": "extended"}),
    ("intra 1, graph opt disabled", 1, {"graph_optimization": "disable"}),
)  # fmt: skip
SESSION_SWEEP_BATCH_SIZES = (1, 64)  # 64: the service's default micro-batch cap


def run_session_sweep(
    config: BenchmarkConfig,
    *,
    fp32: Path = DEFAULT_FP32,
    int8: Path | None = DEFAULT_INT8,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """onnxruntime session settings on the ONNX files, plus offline-optimised copies of them."""
    if not fp32.is_file():
        raise FileNotFoundError(f"FP32 model not found: {fp32}")
    started = time.time()
    load_start = os.getloadavg()
    models = [("FP32", fp32)] + ([("INT8", int8)] if int8 is not None and int8.is_file() else [])
    batch_sizes = (1,) if config.smoke else SESSION_SWEEP_BATCH_SIZES
    cells: list[Cell] = []
    labels: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="ort-offline-") as tmp:
        for name, path in models:
            runtime = Runtime(f"onnx-{name.lower()}", f"ONNX {name}", "onnx", path)
            for label, threads, options in SESSION_SETTINGS:
                cells.append(Cell(runtime, threads, options))
                labels.append((name, label))
            for level in ("extended", "all"):
                # Offline: the graph onnxruntime would run, saved once, loaded with
                # optimisation off (what shipping a pre-optimised file would do).
                optimized = save_optimized_model(path, Path(tmp) / f"{name}.{level}.onnx", level)
                cells.append(
                    Cell(replace(runtime, path=optimized), 1, {"graph_optimization": "disable"})
                )
                labels.append((name, f"intra 1, offline-optimised file ({level}), online off"))
        results, loads = _measure(cells, config, batch_sizes, progress)
        rows = [
            {"model": name, "setting": label, "options": {"threads": c.threads, **c.options},
             "file_bytes": c.runtime.path.stat().st_size, "cell": res}
            for (name, label), c, res in zip(labels, cells, results, strict=True)
        ]  # fmt: skip
    return {
        "benchmark": "inference-session-sweep",
        **_header(config, started, load_start, loads, with_torch=False),
        "batch_sizes": list(batch_sizes),
        "rows": rows,
    }


def _header(
    config: BenchmarkConfig,
    started: float,
    load_start: tuple[float, float, float],
    loads: list[float],
    *,
    with_torch: bool,
) -> dict[str, Any]:
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": time.time() - started,
        "config": asdict(config),
        "system": {"cpu": cpu_info(), **_versions(with_torch)},
        "load": {
            "start": list(load_start),
            "end": list(os.getloadavg()),
            "min": min(loads, default=load_start[0]),
            "max": max(loads, default=load_start[0]),
        },
    }


def run_benchmark(
    config: BenchmarkConfig,
    *,
    fp32: Path = DEFAULT_FP32,
    int8: Path | None = DEFAULT_INT8,
    checkpoint: Path | None = DEFAULT_CHECKPOINT,
    gpu_json: Path | None = DEFAULT_GPU_JSON,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Measure every available runtime and return the report (see ``write_reports``)."""
    if not fp32.is_file():
        raise FileNotFoundError(f"FP32 model not found: {fp32}")
    started = time.time()
    load_start = os.getloadavg()
    runtimes, skipped = _runtimes(fp32, int8, checkpoint)
    cells = [Cell(rt, threads) for rt in runtimes for threads in config.threads]
    results, loads = _measure(cells, config, config.batch_sizes, progress)
    entries: list[dict[str, Any]] = []
    for rt in runtimes:
        per_threads = {
            str(c.threads): res for c, res in zip(cells, results, strict=True) if c.runtime is rt
        }
        entries.append(
            {"key": rt.key, "label": rt.label, "file": str(rt.path), "cells": per_threads}
        )
    entries += skipped
    order = {"torch": 0, "onnx-fp32": 1, "onnx-int8": 2}
    entries.sort(key=lambda e: order.get(e["key"], 9))
    gpu = None
    if gpu_json is not None and gpu_json.is_file():
        gpu = json.loads(gpu_json.read_text(encoding="utf-8"))
        gpu["source"] = str(gpu_json)
    return {
        "benchmark": "inference",
        **_header(
            config, started, load_start, loads, with_torch=any(r.kind == "torch" for r in runtimes)
        ),
        "runtimes": entries,
        "targets": _targets(entries, config),
        "gpu": gpu,
    }


def write_reports(report: dict[str, Any], markdown: Path | None, json_path: Path | None) -> None:
    from benchmarks.inference_report import write_markdown

    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if markdown is not None:
        write_markdown(markdown, render_blocks(report))

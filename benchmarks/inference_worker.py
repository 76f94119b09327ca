"""One benchmark cell, run in a fresh process: load one runtime, time it, print JSON on stdout.

``python -m benchmarks.inference_worker '<spec json>'``. A fresh process per
cell makes load time and peak RSS attributable to that runtime alone, and keeps torch out of
the processes that measure onnxruntime (and the reverse). The ONNX cells go through
``OnnxPredictor``, i.e. exactly what the service runs.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# Imported up front so its memory counts in every cell's baseline, not in one runtime's.
from product_classifier.preprocessing import to_model_input


def _rss_mib() -> float:
    """Current resident set size (VmRSS) of this process."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values_ms: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), in the input's unit."""
    return float(np.percentile(np.asarray(values_ms, dtype=np.float64), q))


def _inputs(batch: int, seed: int = 0) -> np.ndarray:
    # Pixel content does not change the speed of dense convolutions; random bytes avoid a
    # dataset dependency in the benchmark.
    rng = np.random.default_rng(seed)
    return to_model_input(rng.integers(0, 256, size=(batch, 28, 28), dtype=np.uint8))


def _load_onnx(spec: dict[str, Any]) -> tuple[Callable[[np.ndarray], Any], dict[str, Any]]:
    from product_classifier.inference.predictor import OnnxPredictor, PredictorOptions

    options = PredictorOptions(
        intra_op_threads=spec["threads"],
        inter_op_threads=spec.get("inter_op_threads", 1),
        execution_mode=spec.get("execution_mode", "sequential"),
        graph_optimization=spec.get("graph_optimization", "all"),
        allow_spinning=spec.get("allow_spinning", False),
        providers=("CPUExecutionProvider",),
    )
    predictor = OnnxPredictor(spec["model_path"], options)
    return predictor.predict_logits, {
        "size_bytes": os.path.getsize(spec["model_path"]),
        "model_version": predictor.model_version,
        "providers": list(predictor.providers),
    }


def _load_torch(spec: dict[str, Any]) -> tuple[Callable[[np.ndarray], Any], dict[str, Any]]:
    import io

    import torch

    from product_classifier.training.trainer import model_from_checkpoint

    model, ckpt = model_from_checkpoint(spec["model_path"])
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # what the weights alone weigh (no optimiser state)

    def run(batch: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return run, {
        "size_bytes": buffer.getbuffer().nbytes,
        "checkpoint_bytes": os.path.getsize(spec["model_path"]),
        "model_version": f"{ckpt['model']['name']} {ckpt['model']['params']}",
        "providers": ["torch eager CPU"],
    }


def _import_runtime(kind: str, threads: int) -> str:
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        return str(torch.__version__)
    import onnxruntime

    return str(onnxruntime.__version__)


def _latency(
    run: Callable[[np.ndarray], Any], iters: int, warmup: int, max_s: float
) -> dict[str, float]:
    """Up to ``iters`` timed calls; stops early after ``max_s`` (keeping at least 10 calls)."""
    x = _inputs(1)
    for _ in range(warmup):
        run(x)
    times: list[float] = []
    cpu_times: list[float] = []
    cpu0 = _cpu_s()
    deadline = time.perf_counter() + max_s
    for i in range(iters):
        if i >= 10 and time.perf_counter() > deadline:
            break
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        run(x)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        cpu_times.append((time.process_time_ns() - c0) / 1e6)
    cpu = _cpu_s() - cpu0
    return {
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "p99_ms": percentile(times, 99),
        "mean_ms": float(np.mean(times)),
        "min_ms": float(np.min(times)),
        # CPU time of the whole process per call: what a call costs on an idle machine,
        # independent of how often other jobs preempted us.
        "cpu_p50_ms": percentile(cpu_times, 50),
        "iters": len(times),
        # CPU time per call over wall time: > 1 means helper threads (or spinning) burn cores.
        "cpu_per_wall": cpu / (sum(times) / 1e3) if times else float("nan"),
    }


def _throughput(
    run: Callable[[np.ndarray], Any], batch: int, min_images: int, min_iters: int, max_s: float
) -> dict[str, float]:
    """Calls until ``min_images`` and ``min_iters`` are reached, or ``max_s`` has passed."""
    x = _inputs(batch, seed=batch)
    run(x)  # warm-up: first call of a new shape allocates
    iters = 0
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    while True:
        run(x)
        iters += 1
        wall = time.perf_counter() - t0
        if wall >= max_s or (iters >= min_iters and iters * batch >= min_images):
            break
    cpu = _cpu_s() - cpu0
    return {
        "images_per_s": batch * iters / wall,
        "images_per_cpu_s": batch * iters / cpu if cpu > 0 else float("nan"),
        "batch_ms": wall / iters * 1e3,
        "iters": iters,
        "cpu_per_wall": cpu / wall,
    }


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one runtime as described by ``spec`` (see ``inference.CellSpec.to_worker``)."""
    load_before = os.getloadavg()
    rss_start = _rss_mib()
    t0 = time.perf_counter()
    version = _import_runtime(spec["kind"], spec["threads"])
    import_s = time.perf_counter() - t0
    rss_imported = _rss_mib()
    t0 = time.perf_counter()
    run, info = (_load_torch if spec["kind"] == "torch" else _load_onnx)(spec)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mib()
    latency = _latency(run, spec["latency_iters"], spec["warmup_iters"], spec["max_s"])
    throughput = {
        str(bs): _throughput(
            run, bs, spec["throughput_images"], spec["throughput_min_iters"], spec["max_s"]
        )
        for bs in spec["batch_sizes"]
    }
    return {
        "runtime_version": version,
        "import_s": import_s,
        "load_s": load_s,
        "rss_start_mib": rss_start,
        "rss_after_import_mib": rss_imported,
        "rss_after_load_mib": rss_loaded,
        "peak_rss_mib": _peak_rss_mib(),
        "latency_batch1": latency,
        "throughput": throughput,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        **info,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.inference_worker SPEC_JSON")
        return 2
    result = run_cell(json.loads(args[0]))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

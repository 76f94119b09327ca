"""Inference-only throughput: onnxruntime on pre-made batches, no HTTP, no decoding.

This is the ceiling the API cannot beat; comparing it with the HTTP-only rate (the same
service on a trivial model) shows which side is the bottleneck. Runs in its own process so
that several can run at once (``--processes 2`` = two uvicorn workers with one thread each)::

    python -m benchmarks.load.probe MODEL --batch 32 --threads 1 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import child_env


def measure(model: Path, batch: int, threads: int, seconds: float) -> dict[str, Any]:
    from product_classifier.inference.predictor import OnnxPredictor, PredictorOptions

    predictor = OnnxPredictor(
        model, PredictorOptions(intra_op_threads=threads), expected_class_names=None
    )
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    predictor.predict_proba(x)  # warm-up: allocations, kernels
    calls = 0
    started = time.perf_counter()
    cpu0 = time.process_time()
    while True:
        predictor.predict_proba(x)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
    cpu = time.process_time() - cpu0
    return {
        "batch": batch,
        "threads": threads,
        "images_per_s": calls * batch / elapsed,
        "ms_per_call": 1000.0 * elapsed / calls,
        "cpu_ms_per_image": 1000.0 * cpu / (calls * batch),
    }


def measure_parallel(
    model: Path, batch: int, threads: int, seconds: float, processes: int
) -> dict[str, Any]:
    """``processes`` probes at once (like uvicorn workers); images/s is their sum."""
    cmd = [sys.executable, "-m", "benchmarks.load.probe", str(model)]
    cmd += ["--batch", str(batch), "--threads", str(threads), "--seconds", str(seconds)]
    env = child_env()
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"probe failed with {proc.returncode}")
        results.append(json.loads(out))
    return {
        "batch": batch,
        "threads": threads,
        "processes": processes,
        "images_per_s": sum(r["images_per_s"] for r in results),
        "ms_per_call": sum(r["ms_per_call"] for r in results) / len(results),
        "cpu_ms_per_image": sum(r["cpu_ms_per_image"] for r in results) / len(results),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="onnxruntime images/s on one batch size")
    parser.add_argument("model", type=Path)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.batch, args.threads, args.seconds)))


if __name__ == "__main__":
    main()

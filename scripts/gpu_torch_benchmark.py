"""PyTorch CUDA inference benchmark for checkpoints, run on a lent GPU machine.

Usage: python scripts/gpu_torch_benchmark.py CKPT [CKPT ...] > report.json
Measures batch-1 latency (p50/p95/p99) and throughput at batch 1/32/256 in fp32 and bf16,
synchronising the device around every timed call so the numbers are wall-clock honest.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from product_classifier.training.trainer import model_from_checkpoint


def _timed(fn, repeats: int) -> np.ndarray:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return np.array(times)


def bench(path: str) -> dict:
    model, ckpt = model_from_checkpoint(path)
    model = model.cuda().eval().to(memory_format=torch.channels_last)
    out: dict = {"checkpoint": path, "architecture": ckpt["model"], "runs": []}
    for dtype in ("fp32", "bf16"):
        for batch in (1, 32, 256):
            x = torch.rand(batch, 1, 28, 28, device="cuda").contiguous(
                memory_format=torch.channels_last
            )

            def run() -> None:
                with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=dtype == "bf16"):
                    model(x)

            _timed(run, 20)  # warm-up, cudnn autotune
            t = _timed(run, 200 if batch == 1 else 50)
            out["runs"].append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    "p50_ms": float(np.percentile(t, 50) * 1e3),
                    "p95_ms": float(np.percentile(t, 95) * 1e3),
                    "p99_ms": float(np.percentile(t, 99) * 1e3),
                    "images_per_s": float(batch / t.mean()),
                }
            )
    return out


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "results": [bench(p) for p in sys.argv[1:]],
    }
    json.dump(report, sys.stdout, indent=2)

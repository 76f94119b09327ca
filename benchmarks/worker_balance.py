"""Do a few connections opened at once spread over the service's workers? Batch endpoint, Locust.

    python -m benchmarks.worker_balance [--rounds 4] [--baseline-src DIR] [--out FILE]

Starts ``product-classifier serve --workers 2`` (the released default model), waits until both
workers are up, and runs ``make loadtest``'s batch scenario (4 Locust users, each posting 64
PNGs and waiting for the answer, ``benchmarks.load.driver``) for ``--seconds``. It records the
images/s and each worker's CPU: with all four connections on one worker, the other idles and
the machine serves half of what it can. ``--baseline-src`` also runs the service from another
checkout's ``src`` (e.g. a ``git worktree`` of an earlier commit), alternating with this one,
so the two are compared in the same run. Why it matters: ``serving/workers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.server import ServerProcess, free_port, launch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "artifacts/model.int8.onnx"


def _both_workers_up(server: ServerProcess, timeout_s: float = 60.0) -> None:
    """/ready answers once ONE worker is up: wait for the second (uvicorn logs each worker's
    startup), or a measurement of how connections spread would only say that one worker was
    there to take them."""
    deadline = time.monotonic() + timeout_s
    while server.log().count("Application startup complete") < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the second worker did not start in time:\n{server.log_tail()}")
        time.sleep(0.1)


def one_run(src: Path, label: str, seconds: float, workdir: Path) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "product_classifier.cli.main", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--model", str(MODEL), "--workers", "2"]
    env = {"PYTHONPATH": str(src)}
    name = label.replace(" ", "-")
    server = launch(name, cmd, port=port, log_path=workdir / f"{name}.log", env=env, cwd=workdir)
    try:
        server.wait_ready()
        _both_workers_up(server)
        spec = {
            "host": server.base_url,
            "batch_files": 64,
            "scenarios": [
                {
                    "name": "batch",
                    "weights": {"batch": 1},
                    "steps": [{"users": 4, "seconds": seconds, "warmup_s": 0.24}],
                }
            ],
        }
        spec_path, out_path = workdir / "spec.json", workdir / "out.json"
        spec_path.write_text(json.dumps(spec))
        workers = psutil.Process(server.pid).children(recursive=True)
        for worker in workers:
            worker.cpu_percent(None)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.load.driver", str(spec_path), str(out_path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"load driver failed:\n{done.stderr[-2000:]}")
        cpu = sorted((round(w.cpu_percent(None)) for w in workers), reverse=True)
    finally:
        server.stop()
    stats = json.loads(out_path.read_text())["scenarios"][0]["stats"]
    return {"server": label, "images_per_s": stats["images_per_s"], "cpu_percent_by_process": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker_balance")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare")
    parser.add_argument("--out", type=Path, help="write the runs as JSON here")
    args = parser.parse_args()

    servers = [("this checkout", ROOT / "src")]
    if args.baseline_src:
        servers.insert(0, ("baseline", args.baseline_src.resolve()))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for label, src in servers:
                run = one_run(src, label, args.seconds, Path(tmp))
                runs.append(run)
                print(
                    f"{label:14s} {run['images_per_s']:7.0f} img/s, CPU % by process "
                    f"{run['cpu_percent_by_process']}",
                    flush=True,
                )
    summary = {}
    for label, _ in servers:
        mine = [r for r in runs if r["server"] == label]
        summary[label] = {
            "median_images_per_s": statistics.median(r["images_per_s"] for r in mine),
            # A worker under 10% CPU while the others work: it got none of the connections.
            "runs_with_an_idle_worker": sum(1 for r in mine if r["cpu_percent_by_process"][1] < 10),
            "runs": len(mine),
        }
    print(json.dumps(summary, indent=1))
    if args.out:
        result = {
            "command": "python -m benchmarks.worker_balance "
            + " ".join(a if not a.startswith("/") else "DIR" for a in sys.argv[1:]),
            "scenario": "batch endpoint, 4 Locust users, 64 PNGs per request, 2 workers",
            "machine": {"cpus": os.cpu_count()},
            "runs": runs,
            "summary": summary,
        }
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

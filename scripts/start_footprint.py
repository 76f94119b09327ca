"""Cold start and memory of ``product-classifier serve``: seconds to the first 200 on /ready,
and the resident memory of the whole server (supervisor and workers) once every worker is ready.

    python scripts/start_footprint.py --workers 2 --runs 5
    python scripts/start_footprint.py --variant before=/path/to/old/src --variant after=src
    python scripts/start_footprint.py --cli-phase --runs 10

Each ``--variant NAME=SRC`` runs the service from that source tree (put first on PYTHONPATH);
variants are interleaved run by run, so they share the machine's state and their ratio is
fair. The served model is the default one (the cascade in artifacts/), started from the repo
root like an operator would. Prints one JSON object: per variant the median and every run.

``--cli-phase`` times only what ``serve`` does before it execs into the server (settings and
the model check), in fresh interpreters: its check without onnxruntime against the full load it
used to do (``load_verified_model``, the cascade's two sessions).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def one_run(src: Path | None, workers: int, timeout_s: float = 120.0) -> dict[str, float]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCT_CLASSIFIER_")}
    env.update(
        PRODUCT_CLASSIFIER_WORKERS=str(workers),
        PRODUCT_CLASSIFIER_DRAIN_S="0",  # stop at once when measured
        PYTHONUNBUFFERED="1",
    )
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "product_classifier.cli.main", "serve", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        began = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        try:
            while not _ready(port):
                if process.poll() is not None or time.perf_counter() - began > timeout_s:
                    log.seek(0)
                    raise RuntimeError(f"server did not start:\n{log.read().decode()[-2000:]}")
                time.sleep(0.01)
            first_200 = time.perf_counter() - began
            # Memory once every worker has loaded its model (one startup line each).
            while True:
                log.seek(0)
                started = len(re.findall(rb"Application startup complete", log.read()))
                if started >= workers or time.perf_counter() - began > timeout_s:
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            parent = psutil.Process(process.pid)
            tree = [parent, *parent.children(recursive=True)]
            rss = {p.pid: p.memory_info().rss for p in tree}
            worker_pids = [p.pid for p in tree if p.pid != process.pid and _is_worker(p)]
            return {
                "first_200_s": round(first_200, 3),
                "rss_all_mb": round(sum(rss.values()) / MIB, 1),
                "rss_workers_mb": round(sum(rss[pid] for pid in worker_pids) / MIB, 1),
                "processes": len(tree),
            }
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _is_worker(process: psutil.Process) -> bool:
    """uvicorn's workers are multiprocessing spawns; the resource tracker is not a worker."""
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "resource_tracker" not in cmdline


_CLI_PHASE = {
    "check_model": "from product_classifier.cli.serve import check_model\ncheck_model(s)",
    "load_verified_model": "from product_classifier.inference.model_card import "
    "load_verified_model\nload_verified_model(s.model_path, s.card_path, "
    "verify=s.verify_sha256, cascade=s.model_variant == 'cascade')",
}


def cli_phase(runs: int) -> dict[str, dict[str, object]]:
    times: dict[str, list[float]] = {name: [] for name in _CLI_PHASE}
    for _ in range(runs):
        for name, check in _CLI_PHASE.items():
            code = (
                "import time\nt = time.perf_counter()\n"
                "from product_classifier.serving.settings import load_settings\n"
                f"s = load_settings()\n{check}\nprint(time.perf_counter() - t)"
            )
            done = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
                check=True,
            )
            times[name].append(round(float(done.stdout.split()[-1]), 3))
    return {n: {"median_s": statistics.median(t), "runs": t} for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=SRC (default: this checkout)"
    )
    parser.add_argument("--cli-phase", action="store_true", help="time the CLI's check only")
    args = parser.parse_args()
    if args.cli_phase:
        print(json.dumps(cli_phase(args.runs), indent=2))
        return
    variants = {name: Path(src) for name, _, src in (v.partition("=") for v in args.variant)}
    if not variants:
        variants = {"this checkout": REPO_ROOT / "src"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, src in variants.items():
            runs[name].append(one_run(src.resolve(), args.workers))
    report = {
        name: {
            "workers": args.workers,
            **{
                key: statistics.median(run[key] for run in results)
                for key in ("first_200_s", "rss_all_mb", "rss_workers_mb")
            },
            "runs": results,
        }
        for name, results in runs.items()
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

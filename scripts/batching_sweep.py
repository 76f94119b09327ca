"""Same-run latency sweep of two checkouts of the service (e.g. before/after a batcher change).

For each checkout, in alternating rounds, it starts ``product-classifier serve`` with default
settings (the released model, auto workers) from that checkout's ``src`` (PYTHONPATH) and
measures with ``hey`` on one 28x28 PNG (a Fashion-MNIST image, as the load tests send):

* lone requests: one keep-alive connection, one request after the other (p50, p95);
* steady 100 req/s: 4 connections paced at 25 req/s each (p50, p95);
* saturation: 64 connections as fast as they go (req/s, p95).

Usage (from the repository root):
    python scripts/batching_sweep.py --checkout before=/path/a/src --checkout after=src \
        --rounds 2 --seconds 8 --out build/batching_sweep.json

Speed claims are same-run ratios: run it with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import io
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
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

BOUNDARY = "----batching-sweep-5b1f"
REPO_ROOT = Path(__file__).resolve().parents[1]


def png_body() -> bytes:
    """One multipart body with a 28x28 PNG of a real Fashion-MNIST image (falls back to a
    synthetic one when the data set is not on this machine)."""
    try:
        from product_classifier.data.fashion_mnist import load_fashion_mnist

        pixels = load_fashion_mnist("test")[0][0]
    except Exception:  # the sweep measures speed; any 28x28 image works
        pixels = np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="item.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + buf.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(src: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCT_CLASSIFIER_")}
    env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "product_classifier.cli.main", "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server from {src} exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as response:  # nosec B310
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server from {src} not ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def hey(url: str, body: Path, seconds: float, *args: str) -> dict[str, float]:
    cmd = ["hey", "-z", f"{seconds}s", "-m", "POST", "-D", str(body)]
    cmd += ["-T", f"multipart/form-data; boundary={BOUNDARY}", *args, f"{url}/v1/predict"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, secs in re.findall(r"(\d+)%+ in ([\d.]+) secs", out):
        result[f"p{pct}_ms"] = float(secs) * 1000.0
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    result["non_200"] = float(sum(int(n) for code, n in statuses.items() if code != "200"))
    return result


def measure(url: str, body: Path, seconds: float) -> dict[str, dict[str, float]]:
    hey(url, body, 2, "-c", "8")  # warm up: both workers, every code path
    return {
        "lone": hey(url, body, seconds, "-c", "1"),
        "steady_100rps": hey(url, body, seconds, "-c", "4", "-q", "25"),
        "saturation_64": hey(url, body, seconds, "-c", "64"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, help="NAME=SRC_DIR")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    checkouts = [tuple(spec.split("=", 1)) for spec in args.checkout]
    work = Path(tempfile.mkdtemp(prefix="batching-sweep-"))
    body = work / "body.bin"
    body.write_bytes(png_body())
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name, _ in checkouts}
    for round_no in range(args.rounds):
        order = checkouts if round_no % 2 == 0 else checkouts[::-1]  # alternate who goes first
        for name, src in order:
            proc, url = start(Path(src).resolve(), work / f"{name}-{round_no}.log")
            try:
                with urllib.request.urlopen(f"{url}/v1/model", timeout=5) as response:  # nosec B310
                    batching = json.load(response)["runtime"]["batching"]
                result = measure(url, body, args.seconds)
                result["batching"] = batching  # which code ran: its batching settings
            finally:
                stop(proc)
            runs[name].append(result)
            print(name, round_no, json.dumps(result), flush=True)
    summary = {
        name: {
            scenario: {
                key: statistics.median(run[scenario][key] for run in results)
                for key in results[0][scenario]
            }
            for scenario in ("lone", "steady_100rps", "saturation_64")
        }
        for name, results in runs.items()
    }
    print(json.dumps(summary, indent=2))
    if len(checkouts) == 2:
        (a, _), (b, _) = checkouts
        sa, sb = summary[a], summary[b]
        print(f"\n{b} / {a} (medians of {args.rounds} rounds, same run):")
        print(f"  lone p50:        {sa['lone']['p50_ms']:.2f} -> {sb['lone']['p50_ms']:.2f} ms")
        print(
            f"  100 req/s p95:   {sa['steady_100rps']['p95_ms']:.2f} -> "
            f"{sb['steady_100rps']['p95_ms']:.2f} ms"
        )
        print(
            f"  64 conns req/s:  {sa['saturation_64']['rps']:.0f} -> "
            f"{sb['saturation_64']['rps']:.0f} "
            f"(x{sb['saturation_64']['rps'] / sa['saturation_64']['rps']:.2f}), p95 "
            f"{sa['saturation_64']['p95_ms']:.1f} -> {sb['saturation_64']['p95_ms']:.1f} ms"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"runs": runs, "median": summary}, indent=2))


if __name__ == "__main__":
    main()

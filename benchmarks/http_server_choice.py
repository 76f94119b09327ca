"""uvicorn (httptools, uvloop) against Granian (ASGI) for this app, measured in one run.

``python -m benchmarks.http_server_choice`` starts each server in turn (uvicorn, granian,
uvicorn, granian, ...; both one worker per core, the released default model, no drain), and
drives it with ``hey``: a lone request (1 connection), 64 connections on a 28x28 PNG and on a
600x600 catalog JPEG. Medians per server and their ratios, every raw figure, the versions and
the commit go to ``docs/evidence/http-server.json``. Then it checks, on each server, what the
service relies on: the lifespan (``/ready``), the body limit (413), the access log, the
multiprocess metrics (the workers' counts add up) and the SIGTERM drain (``/ready`` 503 while
draining, exit after it).

Granian is not a dependency: install it apart (``pip install --target DIR granian``) and give
``--granian-path DIR``; it is put on ``PYTHONPATH`` of the Granian server only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.load import hey as hey_mod
from benchmarks.load.payloads import CONTENT_TYPE, build_pool
from benchmarks.server import ServerProcess, free_port, start_server

SERVERS = ("uvicorn", "granian")
WORKERS = 2
DEFAULT_OUT = Path("docs/evidence/http-server.json")
# (name, payload, connections): what the acceptance targets of the load test name.
SCENARIOS = (("lone_png", "png", 1), ("png_64", "png", 64), ("jpeg_64", "jpeg", 64))


# -- the Granian server process ---------------------------------------------------------------


def serve_granian(port: int, workers: int) -> None:
    """What ``serving/run.py`` does for uvicorn, for Granian: metrics directory, log config."""
    from granian import Granian

    from product_classifier.serving.logging_config import build_log_config
    from product_classifier.serving.observability_multiprocess import prepare_multiprocess_dir
    from product_classifier.serving.run import APP_FACTORY

    prepare_multiprocess_dir(workers, enabled=True)
    Granian(
        APP_FACTORY,
        factory=True,
        address="127.0.0.1",
        port=port,
        interface="asgi",
        workers=workers,
        loop="uvloop",
        http="1",
        log_dictconfig=build_log_config("info", "json"),
        log_access=False,  # the app writes its own access line, as under uvicorn
    ).serve()


# -- starting servers -------------------------------------------------------------------------


def server_cmd(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        run = [sys.executable, "-m", "product_classifier.serving.run"]
        return [*run, "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    return [sys.executable, "-m", "benchmarks.http_server_choice", "--serve-granian", str(port)]


def server_env(server: str, granian_path: str, drain_s: float) -> dict[str, str]:
    env = {
        "PRODUCT_CLASSIFIER_WORKERS": str(WORKERS),
        "PRODUCT_CLASSIFIER_DRAIN_S": f"{drain_s:g}",
    }
    if server == "granian":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (granian_path, os.getcwd()) if p)
    return env


def start(server: str, granian_path: str, workdir: Path, drain_s: float = 0.0) -> ServerProcess:
    port = free_port()
    return start_server(
        server,
        server_cmd(server, port),
        port=port,
        log_path=workdir / f"{server}-{port}.log",
        env=server_env(server, granian_path, drain_s),
        timeout_s=60,
    )


# -- measuring --------------------------------------------------------------------------------


def bodies(workdir: Path) -> dict[str, Path]:
    pool = build_pool(png_count=1, jpeg_count=1, batch_count=0)
    paths = {"png": workdir / "png.bin", "jpeg": workdir / "jpeg.bin"}
    paths["png"].write_bytes(pool.png[0])
    paths["jpeg"].write_bytes(pool.jpeg[0])
    return paths


def measure_round(
    server: ServerProcess, files: dict[str, Path], seconds: float, lone_s: float
) -> dict[str, Any]:
    url = f"{server.base_url}/v1/predict"
    hey_mod.run_hey(url, files["png"], CONTENT_TYPE, seconds=2.0, connections=64)  # warm-up
    out: dict[str, Any] = {}
    for name, payload, conns in SCENARIOS:
        secs = lone_s if conns == 1 else seconds
        result = hey_mod.run_hey(url, files[payload], CONTENT_TYPE, seconds=secs, connections=conns)
        stats = result["stats"]
        out[name] = {
            k: stats[k] for k in ("requests", "rps", "p50_ms", "p95_ms", "p99_ms", "errors")
        }
        # No machine paths in the evidence: the body file by name, the port as PORT.
        command = result["command"].replace(server.base_url, "http://127.0.0.1:PORT")
        out[name]["command"] = command.replace(str(files[payload]), files[payload].name)
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for server in SERVERS:
        mine = [r["figures"] for r in rounds if r["server"] == server]
        medians[server] = {
            name: {
                key: statistics.median(f[name][key] for f in mine)
                for key in ("rps", "p50_ms", "p95_ms")
            }
            for name, _, _ in SCENARIOS
        }
    ratios = {
        name: {
            "rps": medians["granian"][name]["rps"] / medians["uvicorn"][name]["rps"],
            "p50_ms": medians["granian"][name]["p50_ms"] / medians["uvicorn"][name]["p50_ms"],
            "p95_ms": medians["granian"][name]["p95_ms"] / medians["uvicorn"][name]["p95_ms"],
        }
        for name, _, _ in SCENARIOS
    }
    return {"medians": medians, "granian_over_uvicorn": ratios}


# -- what the service relies on ---------------------------------------------------------------


def _request(
    url: str, data: bytes | None = None, content_type: str = CONTENT_TYPE
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # nosec B310 (127.0.0.1)
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def _predict_count(base: str) -> float:
    _, text = _request(f"{base}/metrics")
    pattern = r'^http_requests_total\{[^}]*route="/v1/predict"[^}]*status="200"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text.decode(), re.M))


def compatibility(server_name: str, granian_path: str, workdir: Path, png: bytes) -> dict[str, Any]:
    drain_s = 2.0
    server = start(server_name, granian_path, workdir, drain_s=drain_s)
    base = server.base_url
    checks: dict[str, Any] = {"lifespan_ready": _request(f"{base}/ready")[0] == 200}
    from product_classifier.serving.settings import ServeSettings

    too_big = b"x" * (ServeSettings().max_upload_bytes + 128 * 1024)
    checks["oversize_status"] = _request(f"{base}/v1/predict", too_big)[0]
    before = _predict_count(base)
    statuses = [_request(f"{base}/v1/predict", png)[0] for _ in range(40)]
    time.sleep(0.2)
    after = _predict_count(base)
    checks["metrics_predicts_counted"] = f"{after - before:g} of {statuses.count(200)}"
    checks["metrics_add_up"] = after - before == statuses.count(200) == 40
    time.sleep(0.3)
    checks["access_log_lines"] = server.log().count('"logger":"product_classifier.access"')
    # The drain: SIGTERM, then /ready must say 503 (not refuse) and the server exit after it.
    t0 = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    checks["ready_while_draining"] = _request(f"{base}/ready")[0]
    checks["predict_while_draining"] = _request(f"{base}/v1/predict", png)[0]
    try:
        server.process.wait(timeout=drain_s + 20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    checks["exit_after_s"] = round(time.perf_counter() - t0, 2)
    checks["exit_code"] = server.process.returncode
    log = server.log()
    checks["drain_logged"] = "draining for" in log
    # Each worker's lifespan logs its end (observability's "shutdown" line).
    checks["lifespan_shutdowns_logged"] = log.count('"event":"shutdown"')
    checks["drain_ok"] = (
        checks["ready_while_draining"] == 503
        and checks["predict_while_draining"] == 200
        and checks["exit_after_s"] >= drain_s
    )
    print(f"{server_name} log: {server.log_path}")
    return checks


# -- the run ----------------------------------------------------------------------------------


def _version(dist: str, granian_path: str = "") -> str:
    if dist == "granian":
        found = list(Path(granian_path).glob("granian-*.dist-info"))
        return found[0].name.removeprefix("granian-").removesuffix(".dist-info") if found else "?"
    return importlib.metadata.version(dist)


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="http-server-choice-"))
    files = bodies(workdir)
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        for name in SERVERS:
            server = start(name, args.granian_path, workdir)
            try:
                figures = measure_round(server, files, args.seconds, args.lone_seconds)
            finally:
                server.stop()
            rounds.append({"round": i + 1, "server": name, "figures": figures})
            f = figures
            print(
                f"round {i + 1} {name:8s} lone p50 {f['lone_png']['p50_ms']:.2f} ms | "
                f"png64 {f['png_64']['rps']:.0f} req/s p95 {f['png_64']['p95_ms']:.1f} | "
                f"jpeg64 {f['jpeg_64']['rps']:.0f} req/s p95 {f['jpeg_64']['p95_ms']:.1f}",
                flush=True,
            )
    compat = {}
    if not args.skip_checks:
        png = files["png"].read_bytes()
        compat = {name: compatibility(name, args.granian_path, workdir, png) for name in SERVERS}
    return {
        "command": "python -m benchmarks.http_server_choice --rounds "
        f"{args.rounds} --seconds {args.seconds:g} --lone-seconds {args.lone_seconds:g} "
        "--granian-path DIR",
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {
            "uvicorn": _version("uvicorn"),
            "httptools": _version("httptools"),
            "uvloop": _version("uvloop"),
            "granian": _version("granian", args.granian_path),
        },
        "setup": {
            "workers": WORKERS,
            "model": "the released default (cascade)",
            "drain_s": 0,
            "uvicorn": "python -m product_classifier.serving.run (httptools, uvloop)",
            "granian": "Granian(interface=asgi, loop=uvloop, http=1, factory=True)",
            "hey_seconds": args.seconds,
            "lone_seconds": args.lone_seconds,
            "order": "alternating rounds, uvicorn first",
        },
        "rounds": rounds,
        **summarize(rounds),
        "compatibility": compat,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_server_choice")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="each 64-connection hey run")
    parser.add_argument("--lone-seconds", type=float, default=5.0)
    parser.add_argument("--granian-path", default=os.environ.get("GRANIAN_PATH", ""))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--serve-granian", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_granian:
        serve_granian(args.serve_granian, WORKERS)
        return
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("medians", "granian_over_uvicorn")}, indent=2))
    for name, checks in result["compatibility"].items():
        print(name, checks)


if __name__ == "__main__":
    main()

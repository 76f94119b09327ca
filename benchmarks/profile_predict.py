"""Where the event loop's Python time goes per ``POST /v1/predict``, under load.

``python -m benchmarks.profile_predict`` runs one uvicorn worker (httptools, uvloop, the
released default model, the service's defaults and logging, metrics in multiprocess files as
with ``--workers 2``) in this process under cProfile, drives it with
``hey`` (64 connections, a 28x28 PNG) and prints the functions with the most own time per
request. Only the event loop's thread is profiled: the model calls and image decoding run in
the micro-batcher's threads and are not part of the HTTP layer's cost. cProfile slows every
Python call, so read the ranking and the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.load import hey as hey_mod
from benchmarks.load.payloads import CONTENT_TYPE, build_pool
from benchmarks.server import free_port


def _drive(server: object, port: int, body: Path, seconds: float, out: dict[str, object]) -> None:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=1) as r:  # nosec B310
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    url = f"{base}/v1/predict"
    hey_mod.run_hey(url, body, CONTENT_TYPE, seconds=1.0, connections=64)  # warm-up
    out["profile_start"] = True
    result = hey_mod.run_hey(url, body, CONTENT_TYPE, seconds=seconds, connections=64)
    out["stats"] = result["stats"]
    server.should_exit = True  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_predict")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="write the pstats file here too")
    args = parser.parse_args()

    import uvicorn

    from product_classifier.serving.observability_multiprocess import prepare_multiprocess_dir
    from product_classifier.serving.run import APP_FACTORY, uvicorn_options

    # Metrics as `serve` keeps them with one worker per core: in files shared by the workers.
    prepare_multiprocess_dir(2)
    os.environ.setdefault("PRODUCT_CLASSIFIER_WORKERS", "1")
    os.environ.setdefault("PRODUCT_CLASSIFIER_DRAIN_S", "0")
    body = Path(tempfile.mkdtemp(prefix="profile-predict-")) / "png.bin"
    body.write_bytes(build_pool(png_count=1, jpeg_count=1, batch_count=0).png[0])
    port = free_port()
    # Exactly what `serve` gives uvicorn (serving/run.py), on one worker in this process.
    config = uvicorn.Config(
        APP_FACTORY,
        host="127.0.0.1",
        port=port,
        **uvicorn_options("info", "json", access_log=False),
    )
    server = uvicorn.Server(config)
    out: dict[str, object] = {}
    profiler = cProfile.Profile()
    driver = threading.Thread(target=_drive, args=(server, port, body, args.seconds, out))
    driver.start()

    # Profile only while the measured hey run goes: a wrapper around the loop's first tick
    # would also count the start; so the profiler is switched on from a loop callback.
    async def toggle() -> None:
        import asyncio

        while "profile_start" not in out:
            await asyncio.sleep(0.01)
        profiler.enable()
        while "stats" not in out:
            await asyncio.sleep(0.05)
        profiler.disable()

    original_startup = server.startup

    async def startup(sockets: object = None) -> None:
        import asyncio

        await original_startup(sockets)  # type: ignore[arg-type]
        asyncio.get_running_loop().create_task(toggle())

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    driver.join()
    stats = out["stats"]
    assert isinstance(stats, dict)
    requests = int(stats["requests"])
    print(f"hey: {stats['rps']:.0f} req/s under the profiler, {requests} requests")
    if args.save:
        profiler.dump_stats(str(args.save))
    text = io.StringIO()
    ps = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    total = ps.total_tt  # type: ignore[attr-defined]
    print(f"profiled loop time: {total:.2f} s, {total / requests * 1e6:.0f} us per request")
    entries = ps.stats.items()  # type: ignore[attr-defined]
    rows = sorted(entries, key=lambda kv: kv[1][2], reverse=True)[: args.top]
    print(f"{'own us/req':>10} {'share':>6} {'calls/req':>9}  function")
    for (file, line, name), (_, calls, tottime, _, _) in rows:
        where = "/".join(Path(file).parts[-2:]) if file != "~" else "builtin"
        print(
            f"{tottime / requests * 1e6:10.1f} {tottime / total:6.1%} {calls / requests:9.2f}  "
            f"{name} ({where}:{line})"
        )


if __name__ == "__main__":
    main()

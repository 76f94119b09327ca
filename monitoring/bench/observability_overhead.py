"""Per-request cost of the observability middleware (metrics + one JSON log line).

Calls a trivial ASGI app directly (no sockets, no HTTP parsing) with and without
``ObservabilityMiddleware`` and reports the difference in microseconds per request. The log line
is really formatted and written (to /dev/null). Run it once per metrics mode, because
prometheus_client picks its mode at import::

    .venv/bin/python monitoring/bench/observability_overhead.py
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) \
        .venv/bin/python monitoring/bench/observability_overhead.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

from product_classifier.serving.logging_config import ACCESS_LOGGER, JsonFormatter
from product_classifier.serving.metrics import ServiceMetrics
from product_classifier.serving.observability import ObservabilityMiddleware, Observer
from product_classifier.serving.settings import ServeSettings

REQUESTS = 20_000
ROUNDS = 5
_PREDICTION = {"category": "Bag", "confidence": 0.93, "needs_review": False}


class _Route:
    path = "/v1/predict"


def make_inner(observer: Observer | None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = _Route()
        scope.setdefault("state", {})["request_id"] = "0123456789abcdef0123456789abcdef"
        if observer is not None:  # what the ModelService / batcher hooks add per prediction
            observer.on_prediction(_PREDICTION, 1234)
            observer.metrics.observe_batch(1, 0.001)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def _send(message: dict[str, Any]) -> None:
    pass


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def run(app: Any) -> float:
    headers = [(b"host", b"x"), (b"content-length", b"1290"), (b"content-type", b"multipart")]
    # CPU time of this process, not wall time: on a shared machine the wall clock also counts
    # the time other processes held the core.
    started = time.process_time()
    for _ in range(REQUESTS):
        scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": headers}
        await app(scope, _receive, _send)
    return (time.process_time() - started) / REQUESTS * 1e6


def main() -> None:
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.propagate = False

    from fastapi import FastAPI

    metrics = ServiceMetrics()
    observer = Observer(FastAPI(), ServeSettings(model_path=Path("x.onnx")), metrics)
    metrics.set_model("v1", "0" * 64, ["Bag"])
    bare = make_inner(None)
    wrapped = ObservabilityMiddleware(make_inner(observer), observer=observer)
    mode = f"multiprocess ({metrics.multiprocess_dir})" if metrics.multiprocess else "in-process"
    print(f"metrics: {mode}; {REQUESTS} requests x {ROUNDS} rounds; median CPU us/request")
    for label, level in (("metrics + JSON log line", logging.INFO), ("metrics only", 100)):
        access.setLevel(level)
        base, full = [], []
        for _ in range(ROUNDS):
            base.append(asyncio.run(run(bare)))
            full.append(asyncio.run(run(wrapped)))
        b, f = statistics.median(base), statistics.median(full)
        print(f"  {label:<24} bare {b:6.1f}  observed {f:6.1f}  overhead {f - b:6.1f}")


if __name__ == "__main__":
    main()

"""Graceful drain: a SIGTERM under keep-alive load loses no request (one and two workers).

The clients behave like a load balancer's backends pool: they keep sending on keep-alive
connections, reconnect when a response says ``Connection: close``, and stop routing to the
server only a while after its ``/ready`` failed (the time an orchestrator takes to take a pod
out of its endpoints). Every request sent before that must get its 200.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from live_server import png_bytes
from raw_http import multipart_head

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRAIN_S = 2.5
# How long the "balancer" keeps routing after /ready failed (well inside the drain window).
PROPAGATION_S = 0.5
CLIENTS = 6
BOUNDARY = "drainboundary"


def _body() -> bytes:
    image = png_bytes(np.full((28, 28), 80, np.uint8))
    return multipart_head(BOUNDARY, filename="a.png") + image + f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class LoadResult:
    ok: int = 0
    ok_after_sigterm: int = 0
    closed_by_server: int = 0  # responses carrying Connection: close
    failures: list[str] = field(default_factory=list)  # resets, EOFs, refusals, non-200s
    ready_503: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_sigterm_under_load(live: LiveServer) -> LoadResult:
    """Keep-alive load from CLIENTS connections, SIGTERM mid-load; count what was lost."""
    body = _body()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    result = LoadResult()
    sigterm_at: list[float] = []
    out_at: list[float] = []  # when the balancer stopped routing here
    warmed = threading.Barrier(CLIENTS + 1)

    def routed() -> bool:
        return not out_at or time.monotonic() < out_at[0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        first = True
        while routed():
            try:
                conn.request("POST", "/v1/predict", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                with result.lock:
                    if response.status != 200:
                        result.failures.append(f"status {response.status}")
                    else:
                        result.ok += 1
                        result.ok_after_sigterm += bool(sigterm_at)
                    if (response.getheader("connection") or "").lower() == "close":
                        result.closed_by_server += 1
            except (OSError, http.client.HTTPException) as exc:
                with result.lock:
                    result.failures.append(type(exc).__name__)
                conn.close()  # a real client would reconnect (after a pause); so do we
                time.sleep(0.05)
            if first:
                first = False
                warmed.wait(timeout=30)
        conn.close()

    def balancer() -> None:
        """Polls /ready on fresh connections; marks the server out PROPAGATION_S later."""
        while not out_at:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=5)
                conn.request("GET", "/ready")
                status = conn.getresponse().status
                conn.close()
            except OSError:
                status = -1
            if status == 503:
                result.ready_503 = True
            if status != 200 and sigterm_at:
                out_at.append(time.monotonic() + PROPAGATION_S)
            time.sleep(0.02)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    warmed.wait(timeout=30)  # every connection is open and has been answered once
    poller = threading.Thread(target=balancer)
    poller.start()
    time.sleep(0.3)
    sigterm_at.append(time.monotonic())
    live.process.send_signal(signal.SIGTERM)
    for thread in [*threads, poller]:
        thread.join(timeout=60)
    return result


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_keep_alive_load_loses_nothing(
    server_factory: Callable[..., LiveServer], contract_model: Path, workers: int
) -> None:
    live = server_factory(
        contract_model,
        {"PRODUCT_CLASSIFIER_DRAIN_S": str(DRAIN_S), "PRODUCT_CLASSIFIER_WORKERS": str(workers)},
    )
    result = run_sigterm_under_load(live)
    # The window plus uvicorn's own shutdown; a hang would blow well past it.
    exit_code = live.wait_exit(timeout=DRAIN_S + 20)

    lost = Counter(result.failures)
    assert not lost, f"lost {len(result.failures)} of {result.ok + len(result.failures)}: {lost}"
    assert result.ready_503, "/ready never answered 503 during the drain"
    assert result.ok_after_sigterm > 0, "nothing was served after SIGTERM"
    assert result.closed_by_server > 0, "no response asked keep-alive clients to reconnect"
    assert exit_code in (0, -signal.SIGTERM)
    log = live.log()
    assert "draining" in log
    assert log.count("Application shutdown complete") == workers
    assert "Traceback" not in log

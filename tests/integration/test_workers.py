"""Each worker listens on a socket of its own (serving/workers.py), through the real CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from live_server import REPO_ROOT, LiveServer, clean_env, free_port, png_bytes


def _listening(pid: int, port: int) -> int:
    """How many sockets process ``pid`` listens on at ``port``."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )


def test_each_worker_listens_on_its_own_socket(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    live = server_factory(contract_model, {"PRODUCT_CLASSIFIER_WORKERS": "2"})
    supervisor = psutil.Process(live.process.pid)
    # /ready answers once the first worker is up; give the second one time to start too.
    deadline = time.monotonic() + 60
    while True:
        listeners = {
            child.pid: _listening(child.pid, live.port)
            for child in supervisor.children(recursive=True)
        }
        if sum(listeners.values()) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # uvicorn's own supervisor would hold the one shared socket, and every worker with it.
    assert _listening(supervisor.pid, live.port) == 0
    assert sorted(n for n in listeners.values() if n) == [1, 1], listeners

    # Connections opened at once are all answered, whichever worker the kernel gives them to.
    body = png_bytes(np.zeros((28, 28), dtype=np.uint8))
    codes: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{live.port}", timeout=30) as http:
            codes.append(http.post("/v1/predict", files={"file": ("x.png", body)}).status_code)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8


@pytest.mark.slow
def test_a_taken_port_stops_the_start_with_its_reason(contract_model: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        cmd = [sys.executable, "-m", "product_classifier.cli.main", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--model", str(contract_model)]
        done = subprocess.run(
            cmd,
            env={**clean_env(), "PRODUCT_CLASSIFIER_WORKERS": "2"},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    assert "Address already in use" in done.stdout + done.stderr

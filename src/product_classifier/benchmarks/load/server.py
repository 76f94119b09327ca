"""Start a server under test as a subprocess on 127.0.0.1 and time its cold start.

Cold start is measured from just before ``Popen`` to the first ``GET /ready`` that answers
200 (polled every 10 ms): interpreter start, imports, model load and verification, warm-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.01


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        # The URL is built here from the server we started on 127.0.0.1 (bandit B310).
        with urllib.request.urlopen(url, timeout=1.0) as response:  # nosec B310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    cold_start_s: float = float("nan")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=10)


def start_server(
    name: str,
    cmd: list[str],
    *,
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120.0,
) -> ServerProcess:
    """Run ``cmd`` (which must bind 127.0.0.1:``port``) and wait for ``/ready``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCT_CLASSIFIER_")}
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    server = ServerProcess(name, process, port, log_path)
    url = f"{server.base_url}/ready"
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise ServerStartError(
                f"{name} exited with {process.returncode} before /ready:\n{server.log_tail()}"
            )
        if _ready(url):
            server.cold_start_s = time.perf_counter() - started
            return server
        time.sleep(POLL_S)
    server.stop()
    raise ServerStartError(f"{name} not ready after {timeout_s:.0f} s:\n{server.log_tail()}")

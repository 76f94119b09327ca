"""Start a server as a subprocess on 127.0.0.1 and wait until it answers: the one helper for
the tests (tests/integration/live_server.py), the load test and the scripts that time a start.

Cold start is measured from just before ``Popen`` to the first ready answer (``GET /ready``
by default; polled every 10 ms): interpreter start, imports, model load and warm-up.
"""

from __future__ import annotations

import contextlib
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
SERVICE_ENV_PREFIX = "PRODUCT_CLASSIFIER_"


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without stray PRODUCT_CLASSIFIER_* settings, unbuffered, plus ``extra``:
    a server under test runs with exactly the settings it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _answers(url: str) -> bool:
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
    started: float  # time.perf_counter() just before Popen
    cold_start_s: float = float("nan")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful drain), SIGKILL after ``timeout`` seconds; then SIGKILL whatever
        is left of the server's process group. Why the group: a server whose main process
        exits without taking its children along (LitServe's inference workers do) would
        otherwise keep busy-polling the CPU and skew every later measurement."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own group: start_new_session
        return code

    def wait_ready(self, timeout_s: float = 120.0, path: str = "/ready") -> float:
        """Poll ``path`` until it answers 200; returns (and records) the cold start in seconds.
        Stops the server and raises with its log when it exits or times out first."""
        url = f"{self.base_url}{path}"
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self.process.returncode} before {path} "
                    f"answered:\n{self.log_tail()}"
                )
            if _answers(url):
                self.cold_start_s = time.perf_counter() - self.started
                return self.cold_start_s
            time.sleep(POLL_S)
        self.stop()
        raise ServerStartError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")


def launch(
    name: str,
    cmd: list[str],
    *,
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """Run ``cmd`` (which must bind 127.0.0.1:``port``) with :func:`clean_env` + ``env``,
    output to ``log_path``; does not wait."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        started = time.perf_counter()
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            cwd=cwd,
            start_new_session=True,  # a process group of its own, for stop()
        )
    return ServerProcess(name, process, port, log_path, started)


def start_server(
    name: str,
    cmd: list[str],
    *,
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120.0,
    ready_path: str = "/ready",
) -> ServerProcess:
    """:func:`launch`, then wait until ``ready_path`` answers 200."""
    server = launch(name, cmd, port=port, log_path=log_path, env=env, cwd=cwd)
    server.wait_ready(timeout_s, ready_path)
    return server

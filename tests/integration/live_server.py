"""Helpers for the API tests: run the real service in a subprocess on 127.0.0.1.

Plain functions (the fixtures built on them are in conftest.py), importable from test modules
in this directory as ``live_server``.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from product_classifier.inference.contract_model import build_contract_model, write_model_card

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._clients.append(client)
        return client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=10)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without stray PRODUCT_CLASSIFIER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCT_CLASSIFIER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def launch(
    log_path: Path,
    *,
    model_path: Path | None,
    env: dict[str, str] | None = None,
    via: str = "cli",
) -> LiveServer:
    """Start the service without waiting for it (``via``: the CLI or plain uvicorn)."""
    port = free_port()
    # One worker unless a test asks for more: tests read per-process state (/v1/model's queue,
    # batch counters) and one process starts faster; multi-worker runs are tested on purpose
    # (test_prometheus.py, the load-test smoke run, make docker-test).
    env = {"PRODUCT_CLASSIFIER_WORKERS": "1", **(env or {})}
    if via == "cli":
        cmd = [sys.executable, "-m", "product_classifier.cli.main", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        if model_path is not None:
            cmd += ["--model", str(model_path)]
        extra = dict(env or {})
    else:
        cmd = [sys.executable, "-m", "uvicorn", "product_classifier.serving.app:create_app"]
        cmd += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
        extra = dict(env or {})
        if model_path is not None:
            extra["PRODUCT_CLASSIFIER_MODEL_PATH"] = str(model_path)
    log_file = open(log_path, "wb")  # noqa: SIM115 - the child process owns it from here
    process = subprocess.Popen(
        cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=clean_env(extra)
    )
    log_file.close()
    return LiveServer(process=process, port=port, log_path=log_path)


def wait_ready(server: LiveServer, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {server.process.returncode}:\n{server.log()[-3000:]}"
                )
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()[-3000:]}")


def make_contract_model(directory: Path, **kwargs: object) -> Path:
    model = build_contract_model(directory / "model.onnx", **kwargs)  # type: ignore[arg-type]
    write_model_card(model)
    return model


def png_bytes(pixels: np.ndarray, fmt: str = "PNG", **save_kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **save_kwargs)
    return buf.getvalue()

"""Helpers for the API tests: run the real service in a subprocess on 127.0.0.1.

Plain functions (the fixtures built on them are in conftest.py), importable from test modules
in this directory as ``live_server``.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.server import ServerProcess, clean_env, free_port
from benchmarks.server import launch as launch_process
from product_classifier.inference.contract_model import build_contract_model, write_model_card

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
__all__ = ["REPO_ROOT", "LiveServer", "clean_env", "free_port", "launch", "wait_ready"]


@dataclass
class LiveServer(ServerProcess):
    """The shared :class:`benchmarks.server.ServerProcess` plus httpx clients closed at stop."""

    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._clients.append(client)
        return client

    def stop(self, timeout: float = 30.0) -> int:
        for client in self._clients:
            client.close()
        return super().stop(timeout)


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
    # No drain on SIGTERM either (serving/drain.py): stopping a test server should not take the
    # production window; test_drain.py sets one on purpose.
    extra = {"PRODUCT_CLASSIFIER_WORKERS": "1", "PRODUCT_CLASSIFIER_DRAIN_S": "0", **(env or {})}
    if via == "cli":
        cmd = [sys.executable, "-m", "product_classifier.cli.main", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        if model_path is not None:
            cmd += ["--model", str(model_path)]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "product_classifier.serving.app:create_app"]
        cmd += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
        if model_path is not None:
            extra["PRODUCT_CLASSIFIER_MODEL_PATH"] = str(model_path)
    base = launch_process("server", cmd, port=port, log_path=log_path, env=extra, cwd=REPO_ROOT)
    return LiveServer(base.name, base.process, base.port, base.log_path, base.started)


def wait_ready(server: LiveServer, timeout: float = STARTUP_TIMEOUT_S) -> None:
    server.wait_ready(timeout)


def make_contract_model(directory: Path, **kwargs: object) -> Path:
    model = build_contract_model(directory / "model.onnx", **kwargs)  # type: ignore[arg-type]
    write_model_card(model)
    return model


def png_bytes(pixels: np.ndarray, fmt: str = "PNG", **save_kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def tiny_checkpoint(path: Path) -> Path:
    """A small self-describing checkpoint (torch is imported here only), so that the
    benchmarks' PyTorch rows run without a trained one."""
    import torch

    from product_classifier.models import create_model

    params = {"channels": [4, 8], "hidden": 16}
    model = create_model("baseline_cnn", **params)
    torch.save(
        {
            "format": 1,
            "model": {"name": "baseline_cnn", "params": params},
            "model_state": model.state_dict(),
        },
        path,
    )
    return path

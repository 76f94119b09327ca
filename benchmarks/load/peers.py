"""The peers `make loadtest` measures in the same run as the service: same ONNX model (the
released INT8 file), same ONNX Runtime session settings (``benchmarks/peers/model.py``), same
payloads and load, one worker per core where the server has workers.

BentoML and LitServe run from their own venvs (``make peers``); the naive FastAPI server runs
from the project's venv (it is the project's own dependencies, untuned).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import REPO_ROOT


@dataclass(frozen=True)
class Peer:
    key: str
    name: str  # what the report calls it
    venv: str | None  # folder under LoadOptions.peers_dir; None: this interpreter
    workers: int
    ready_path: str
    module: tuple[str, ...]  # ``python -m`` and its arguments, before --host/--port

    def python(self, peers_dir: Path) -> Path:
        if self.venv is None:
            return Path(sys.executable)
        return peers_dir / self.venv / "bin" / "python"

    def command(self, peers_dir: Path, port: int) -> list[str]:
        return [
            str(self.python(peers_dir)),
            "-m",
            *self.module,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    def env(self, model: Path) -> dict[str, str]:
        """What every peer reads (benchmarks/peers/model.py), and both source trees on the
        path: the peers import the harness and the project's preprocessing from the checkout."""
        return {
            "PEER_MODEL": str(model.resolve()),
            "PEER_WORKERS": str(self.workers),
            "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'src'}",
            "BENTOML_DO_NOT_TRACK": "true",  # no usage report from a benchmark
        }

    def version(self, peers_dir: Path) -> str | None:
        """The framework's version in its venv (recorded with the run)."""
        if self.venv is None:
            return None
        code = f"import importlib.metadata as m; print(m.version({self.venv!r}))"
        done = subprocess.run(
            [str(self.python(peers_dir)), "-c", code], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() or None

    def missing(self, peers_dir: Path) -> str | None:
        python = self.python(peers_dir)
        return None if python.exists() else f"{self.name}: {python} not found (run make peers)"


def peers(cores: int) -> dict[str, Peer]:
    """Every peer, keyed as ``--peers`` names them; ``cores`` workers where a peer has workers."""
    naive = ("benchmarks.load.naive_server",)
    return {
        "naive-1": Peer(
            "naive-1",
            "naive FastAPI + ONNX Runtime, 1 worker",
            None,
            1,
            "/ready",
            (*naive, "--workers", "1"),
        ),
        "naive": Peer(
            "naive",
            f"naive FastAPI + ONNX Runtime, {cores} workers",
            None,
            cores,
            "/ready",
            (*naive, "--workers", str(cores)),
        ),
        "bentoml": Peer(
            "bentoml",
            f"BentoML, {cores} workers",
            "bentoml",
            cores,
            "/readyz",
            ("bentoml", "serve", "benchmarks.peers.bentoml_service:Classifier"),
        ),
        "litserve": Peer(
            "litserve",
            f"LitServe, {cores} inference workers",
            "litserve",
            cores,
            "/ready",
            ("benchmarks.peers.litserve_server",),
        ),
    }


ALL_PEERS = ("naive-1", "naive", "bentoml", "litserve")

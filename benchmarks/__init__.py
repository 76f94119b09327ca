"""The project's benchmark harness, kept out of the shipped package (run from a clone).

``python -m benchmarks inference`` (``make benchmark``): PyTorch eager vs ONNX Runtime FP32 vs
INT8 -> docs/benchmarks.md. ``python -m benchmarks load`` (``make loadtest``): the HTTP API
under load next to its peers (naive FastAPI + ONNX Runtime, BentoML, LitServe) ->
docs/performance.md and docs/evidence/loadtest.json. ``benchmarks.server`` starts a server
subprocess and waits for it; the tests use it too.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the repository root on PYTHONPATH, so that a subprocess started
    as ``python -m benchmarks...`` imports this harness from any working directory."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env

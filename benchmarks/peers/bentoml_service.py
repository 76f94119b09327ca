"""The BentoML peer: the same ONNX model and session settings (``model.py``), one worker per
core, BentoML's defaults otherwise. Runs in its own venv (``make peers``)::

    PEER_MODEL=artifacts/model.int8.onnx PEER_WORKERS=2 PYTHONPATH=.:src \\
        .venv-peers/bentoml/bin/bentoml serve benchmarks.peers.bentoml_service:Classifier

``POST /v1/predict`` takes the multipart field ``file`` like the service; ready: ``/readyz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml

from benchmarks.peers.model import classify, session, workers


@bentoml.service(workers=workers())
class Classifier:
    def __init__(self) -> None:
        self.session = session()

    @bentoml.api(route="/v1/predict")
    def predict(self, file: Path) -> dict[str, Any]:
        return classify(self.session, file.read_bytes())

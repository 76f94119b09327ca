"""The LitServe peer: the same ONNX model and session settings (``model.py``), one inference
worker per core, LitServe's defaults otherwise (file uploads need python-multipart, pinned
with it). Runs in its own venv (``make peers``)::

    PEER_MODEL=artifacts/model.int8.onnx PEER_WORKERS=2 PYTHONPATH=.:src \\
        .venv-peers/litserve/bin/python -m benchmarks.peers.litserve_server --port 8002

``POST /v1/predict`` takes the multipart field ``file`` like the service; ready: ``/ready``.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation as a type.

import argparse
from typing import Any

import litserve as ls
from fastapi import Request

from benchmarks.peers.model import classify, session, workers


class OnnxApi(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.session = session()

    def decode_request(self, request: Request) -> bytes:
        # With a ``Request`` annotation LitServe hands over the parsed multipart form.
        upload: Any = request["file"]
        data: bytes = upload.file.read()
        return data

    def predict(self, x: bytes) -> dict[str, Any]:
        # Decoding is part of the per-image work, as in the other servers.
        return classify(self.session, x)

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LitServe peer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args(argv)
    server = ls.LitServer(
        OnnxApi(api_path="/v1/predict"),
        accelerator="cpu",
        workers_per_device=workers(),
        healthcheck_path="/ready",
    )
    server.run(host=args.host, port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()

"""The naive server: the service as one would first write it, with none of the tuning.

FastAPI with a plain ``def`` endpoint (FastAPI's default thread pool), ``UploadFile``,
pydantic response models, one image per model call (no batching), uvicorn with its defaults
(access log included). It uses the project's preprocessing so that every server answers the
same question. Two backends:

* ``onnx`` (the peer): the same ONNX file and ONNX Runtime session settings as every peer
  (``benchmarks/peers/model.py``), ``--workers`` uvicorn processes (one per core);
* ``torch`` (an extra row): PyTorch eager on the training checkpoint, one process, torch's
  default thread count. torch is allowed here only, never in the serving path.

Run: ``python -m benchmarks.load.naive_server --model artifacts/model.int8.onnx --workers 2``
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, UploadFile
from pydantic import BaseModel

from product_classifier.constants import CLASS_NAMES
from product_classifier.preprocessing import PreprocessingError, preprocess_bytes

DEFAULT_CHECKPOINT = Path("runs/release/best.pt")
DEFAULT_MODEL = Path("artifacts/model.int8.onnx")


class TopK(BaseModel):
    category: str
    class_id: int
    probability: float


class Prediction(BaseModel):
    category: str
    class_id: int
    confidence: float
    top_k: list[TopK]
    filename: str | None = None


class BatchResult(BaseModel):
    results: list[Prediction | dict[str, Any]]


def _torch_classifier(checkpoint: Path) -> Callable[[bytes], dict[str, Any]]:
    import torch

    from product_classifier.training.trainer import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    model.eval()

    def classify(data: bytes) -> dict[str, Any]:
        x = torch.from_numpy(preprocess_bytes(data))
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0]
        top = torch.topk(probs, 3)
        entries = [
            {"category": CLASS_NAMES[int(i)], "class_id": int(i), "probability": float(p)}
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        best = entries[0]
        return {
            "category": best["category"],
            "class_id": best["class_id"],
            "confidence": best["probability"],
            "top_k": entries,
        }

    return classify


def _onnx_classifier(model: Path) -> Callable[[bytes], dict[str, Any]]:
    from benchmarks.peers.model import classify, session

    sess = session(model)
    return lambda data: classify(sess, data)


def create_app(classify: Callable[[bytes], dict[str, Any]]) -> FastAPI:
    app = FastAPI(title="naive server")

    def predict_one(data: bytes, filename: str | None = None) -> Prediction:
        return Prediction(**classify(data), filename=filename)

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/predict", response_model=Prediction)
    def predict(file: Annotated[UploadFile, File()]) -> Prediction:
        try:
            return predict_one(file.file.read())
        except PreprocessingError as exc:
            raise HTTPException(400, exc.message) from exc

    @app.post("/v1/predict/batch", response_model=BatchResult)
    def predict_batch(files: Annotated[list[UploadFile], File()]) -> BatchResult:
        results: list[Prediction | dict[str, Any]] = []
        for f in files:  # one model call per image: what "no batching" means
            try:
                results.append(predict_one(f.file.read(), f.filename))
            except PreprocessingError as exc:
                results.append({"error": exc.message, "filename": f.filename})
        return BatchResult(results=results)

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory in each worker process (``NAIVE_BACKEND``, ``NAIVE_MODEL``)."""
    path = Path(os.environ["NAIVE_MODEL"])
    if os.environ.get("NAIVE_BACKEND", "onnx") == "torch":
        return create_app(_torch_classifier(path))
    return create_app(_onnx_classifier(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX backend's file")
    parser.add_argument("--checkpoint", type=Path, help="PyTorch eager backend instead")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    torch_backend = args.checkpoint is not None
    os.environ["NAIVE_BACKEND"] = "torch" if torch_backend else "onnx"
    os.environ["NAIVE_MODEL"] = str(args.checkpoint if torch_backend else args.model)

    import uvicorn

    # uvicorn's defaults otherwise (access log included): the untuned service.
    uvicorn.run(
        "benchmarks.load.naive_server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1 if torch_backend else args.workers,
    )


if __name__ == "__main__":
    main()

"""The baseline: the service as one would first write it, with none of the tuning.

FastAPI + PyTorch eager on the training checkpoint, one image per model call (no batching), a
plain ``def`` endpoint (FastAPI's default thread pool), pydantic response models, torch's default
thread count, one uvicorn process with default settings. It uses the shared preprocessing so that
both servers answer the same question. torch is allowed here only (never in serving/).

Run: ``python -m product_classifier.benchmarks.load.naive_server --checkpoint runs/release/best.pt``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, UploadFile
from pydantic import BaseModel

from product_classifier.constants import CLASS_NAMES
from product_classifier.preprocessing import PreprocessingError, preprocess_bytes

DEFAULT_CHECKPOINT = Path("runs/release/best.pt")


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


def create_app(checkpoint: Path) -> FastAPI:
    import torch

    from product_classifier.training.trainer import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    model.eval()
    app = FastAPI(title="naive baseline")

    def classify(data: bytes, filename: str | None = None) -> Prediction:
        x = torch.from_numpy(preprocess_bytes(data))
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0]
        top = torch.topk(probs, 3)
        entries = [
            TopK(category=CLASS_NAMES[int(i)], class_id=int(i), probability=float(p))
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        best = entries[0]
        return Prediction(
            category=best.category,
            class_id=best.class_id,
            confidence=best.probability,
            top_k=entries,
            filename=filename,
        )

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/predict", response_model=Prediction)
    def predict(file: Annotated[UploadFile, File()]) -> Prediction:
        try:
            return classify(file.file.read())
        except PreprocessingError as exc:
            raise HTTPException(400, exc.message) from exc

    @app.post("/v1/predict/batch", response_model=BatchResult)
    def predict_batch(files: Annotated[list[UploadFile], File()]) -> BatchResult:
        results: list[Prediction | dict[str, Any]] = []
        for f in files:  # one model call per image: what "no batching" means
            try:
                results.append(classify(f.file.read(), f.filename))
            except PreprocessingError as exc:
                results.append({"error": exc.message, "filename": f.filename})
        return BatchResult(results=results)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)

    import uvicorn

    # uvicorn's defaults (access log included): the baseline is the untuned service.
    uvicorn.run(create_app(args.checkpoint), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

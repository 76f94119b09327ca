"""The pictures' second opinion (inference/expert.py): loaded from the card and verified, asked
by the service (single and batch, real pictures only) and by the bulk CLI's local mode."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.inference.errors import ModelLoadError
from product_classifier.inference.model_card import load_verified_model, sha256_file
from product_classifier.inference.review import ReviewPolicy

# Main policy: never flags. Pictures: never flag on the model's own confidence, but always when
# the expert (a random-weight model, never 99% sure) doubts: every real picture is out of scope.
POLICY = ReviewPolicy(
    threshold=0.0, pictures=ReviewPolicy(threshold=0.0, second_opinion=0.99)
).to_dict()


def _expert_dir(tmp_path: Path, **expert: Any) -> Path:
    model = build_contract_model(tmp_path / "model.onnx", seed=1, model_version="main-1")
    build_contract_model(tmp_path / "expert.onnx", seed=2, model_version="expert-1")
    entry = {"file": "expert.onnx", "sha256": sha256_file(tmp_path / "expert.onnx"), **expert}
    write_model_card(model, model_version="main-1", picture_expert=entry, review=POLICY)
    return model


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


SMALL = _png(np.arange(784, dtype=np.uint8).reshape(28, 28))  # the dataset's form
PICTURE = _png(
    255 - np.kron(np.arange(784, dtype=np.uint8).reshape(28, 28), np.ones((4, 4), np.uint8))
)


def test_the_cards_expert_is_loaded_and_verified(tmp_path: Path) -> None:
    model = _expert_dir(tmp_path)
    loaded = load_verified_model(model)
    assert loaded.expert is not None and loaded.expert.model_version == "expert-1"
    assert load_verified_model(model, picture_expert=False).expert is None
    (tmp_path / "expert.onnx").write_bytes((tmp_path / "expert.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        load_verified_model(model)
    (tmp_path / "expert.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"not found: .*expert\.onnx"):
        load_verified_model(model)
    with pytest.raises(ModelLoadError, match="picture expert model not found"):
        load_verified_model(model, verify=False)


def test_the_service_asks_the_expert_about_real_pictures_only(tmp_path: Path) -> None:
    import httpx

    from product_classifier.serving.app import create_app
    from product_classifier.serving.settings import ServeSettings

    model = _expert_dir(tmp_path)
    app = create_app(ServeSettings(model_path=model))

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                singles = [
                    (await client.post("/v1/predict", files={"file": ("a.png", data)})).json()
                    for data in (SMALL, PICTURE)
                ]
                files = [("files", (f"{i}.png", d)) for i, d in enumerate([PICTURE, SMALL] * 2)]
                batch = (await client.post("/v1/predict/batch", files=files)).json()["results"]
                info = (await client.get("/v1/model")).json()
                return singles, batch, info

    singles, batch, info = asyncio.run(scenario())
    assert singles[0]["needs_review"] is False  # 28x28: the main policy, no expert
    assert singles[1]["review_reason"] == "out_of_scope" and singles[1]["out_of_scope"] is True
    assert [row["review_reason"] for row in batch] == ["out_of_scope", None] * 2
    # The expert only flags: the answer is the served model's.
    assert batch[0]["category"] == singles[1]["category"]
    assert batch[0]["confidence"] == pytest.approx(singles[1]["confidence"], rel=1e-5)
    assert info["runtime"]["picture_expert"] == {
        "model_version": "expert-1",
        "second_opinion": 0.99,
    }


def test_the_bulk_cli_asks_it_the_same_way(tmp_path: Path) -> None:
    from product_classifier.inference.bulk import LocalBackend

    rows = LocalBackend(_expert_dir(tmp_path)).classify([("a.png", SMALL), ("b.png", PICTURE)])
    assert [row.review_reason for row in rows] == [None, "out_of_scope"]
    without = LocalBackend(
        tmp_path / "model.onnx",
        model=load_verified_model(tmp_path / "model.onnx", picture_expert=False),
    ).classify([("b.png", PICTURE)])
    assert without[0].review_reason is None

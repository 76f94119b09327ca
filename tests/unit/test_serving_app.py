"""The app factory in-process: no import side effects, readiness, lifespan, error shapes.

Every endpoint and error over real HTTP is covered by tests/integration/test_api_*.py.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.serving.app import create_app
from product_classifier.serving.settings import ServeSettings


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(buf, "PNG")
    return buf.getvalue()


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, over an in-process transport (no sockets)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def run(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        async with running(app) as client:
            return await scenario(client)

    return asyncio.run(main())


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    model = build_contract_model(tmp_path / "model.onnx")
    write_model_card(model)
    return ServeSettings(model_path=model)


_SERVE_ONE_REQUEST = """
import asyncio, io, sys
import httpx
from product_classifier.serving.app import create_app
from product_classifier.serving.settings import ServeSettings

app = create_app(ServeSettings(model_path=sys.argv[1]))
assert app.state.ready is False and app.state.service is None  # nothing loaded at creation

async def main():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            png = open(sys.argv[2], "rb").read()
            r = await client.post("/v1/predict", files={"file": ("a.png", png)})
            assert r.status_code == 200, r.text

asyncio.run(main())
print(" ".join(sorted(sys.modules)))
"""


def test_serving_a_request_imports_neither_torch_nor_onnx(
    settings: ServeSettings, tmp_path: Path
) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(_png())
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_ONE_REQUEST, str(settings.model_path), str(png)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    modules = set(result.stdout.split())
    assert "product_classifier.serving.app" in modules
    assert "torch" not in modules
    assert "onnx" not in modules  # a training dependency: the serving install lacks it


def test_before_startup_only_liveness_is_ok() -> None:
    app = create_app(ServeSettings(model_path=Path("/nonexistent.onnx")))

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # no lifespan: the model never loads
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.get("/health"),
                await client.get("/ready"),
                await client.get("/v1/categories"),
                await client.post("/v1/predict", files={"file": ("a.png", _png())}),
            ]

    health, ready, categories, predict = asyncio.run(scenario())
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    for response in (ready, categories, predict):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_ready"
        assert response.headers["retry-after"] == "1"


def test_lifespan_loads_serves_and_stops(settings: ServeSettings) -> None:
    app = create_app(settings)

    async def scenario(client: httpx.AsyncClient) -> Any:
        assert app.state.ready is True
        ready = await client.get("/ready")
        assert ready.json() == {"status": "ready", "model_version": "test-0"}
        response = await client.post("/v1/predict", files={"file": ("a.png", _png(), "image/png")})
        assert response.status_code == 200
        assert response.json()["request_id"] == response.headers["x-request-id"]
        return app.state.service.batcher

    batcher = run(app, scenario)
    assert app.state.ready is False
    assert app.state.service is None
    assert not batcher.running


def test_lifespan_fails_on_a_tampered_model(settings: ServeSettings) -> None:
    write_model_card(settings.model_path, sha256="0" * 64)
    from product_classifier.inference.errors import ModelLoadError

    async def nothing(client: httpx.AsyncClient) -> None:
        return None

    with pytest.raises(ModelLoadError, match="sha256"):
        run(create_app(settings), nothing)


def test_unexpected_errors_become_json_500(settings: ServeSettings) -> None:
    app = create_app(settings)

    async def explode(data: bytes) -> dict:
        raise RuntimeError("bug")

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        app.state.service.predict_bytes = explode
        return await client.post(
            "/v1/predict", files={"file": ("a.png", _png())}, headers={"X-Request-ID": "req-1"}
        )

    response = run(app, scenario)
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal server error"},
        "request_id": "req-1",
    }
    assert response.headers["x-request-id"] == "req-1"


@pytest.mark.parametrize("bad_id", ["x" * 200, "a b", "ünïcode", ""])
def test_unusable_request_ids_are_replaced(settings: ServeSettings, bad_id: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/health", headers={"X-Request-ID": bad_id.encode("utf-8")})

    rid = run(create_app(settings), scenario).headers["x-request-id"]
    assert rid != bad_id and len(rid) == 32 and int(rid, 16) >= 0


def test_cors_is_off_by_default_and_on_when_configured(settings: ServeSettings) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/health", headers={"Origin": "https://shop.example"})

    assert "access-control-allow-origin" not in run(create_app(settings), scenario).headers
    settings.cors_origins = ["https://shop.example"]
    response = run(create_app(settings), scenario)
    assert response.headers["access-control-allow-origin"] == "https://shop.example"

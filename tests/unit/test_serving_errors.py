"""Clients get stable codes and the service's own sentences, never an exception's text.

In-process app on the contract model; the exceptions carry a marker that must never reach a
response body (it would be a library's or the code's internals: paths, class names, parser
state), while each error keeps its documented code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.serving import service as service_module
from product_classifier.serving.app import create_app
from product_classifier.serving.settings import ServeSettings

MARKER = "SECRET-INTERNAL /srv/app/module.py <class 'Thing'>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ServeSettings:
    model = build_contract_model(tmp_path_factory.mktemp("errors") / "model.onnx")
    write_model_card(model)
    return ServeSettings(model_path=model)


def run(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await scenario(client)

    return asyncio.run(main())


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    for leak in ("SECRET", "Traceback", "<class", "Error(", "errno", "/srv/"):
        assert leak not in response.text, response.text
    return str(body["error"]["message"])


def test_a_failing_model_is_a_generic_500_with_the_request_id(settings: ServeSettings) -> None:
    app = create_app(settings)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        async def broken(*args: Any) -> Any:
            raise RuntimeError(MARKER)  # e.g. onnxruntime failing inside the model call

        app.state.service.predict_bytes = broken
        app.state.service.predict_many = broken
        files = {"file": ("a.png", _png())}
        return [
            await client.post("/v1/predict", files=files, headers={"X-Request-ID": "r-1"}),
            await client.post("/v1/predict/batch", files=[("files", ("a.png", _png()))]),
        ]

    single, batch = run(app, scenario)
    assert assert_error(single, 500, "internal_error") == "internal server error"
    assert single.json()["request_id"] == "r-1"
    assert assert_error(batch, 500, "internal_error") == "internal server error"


def test_an_unexpected_decoder_failure_is_invalid_image_without_its_text(
    settings: ServeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exotic(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(MARKER)

    app = create_app(settings)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        monkeypatch.setattr(service_module, "preprocess_bytes", exotic)
        return await client.post("/v1/predict", files={"file": ("a.png", _png())})

    message = assert_error(run(app, scenario), 400, "invalid_image")
    assert message == "the image could not be processed"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": {"file": "shirt.png"}}, 422, "validation_error"),
        ({"content": b"--x--", "headers": {"Content-Type": "multipart/form-data"}}, 400,
         "invalid_multipart"),
        ({"content": b"--x\r\nContent-Disposition form-data\r\n\r\nabc\r\n--x--\r\n",
          "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 400,
         "invalid_multipart"),
        ({"files": {"file": ("a.png", PNG_SIGNATURE + b"\0" * 30)}}, 400, "corrupt_image"),
        ({"files": {"file": ("a.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\0" * 50)}}, 400,
         "corrupt_image"),
        ({"files": {"file": ("a.txt", b"hello")}}, 415, "unsupported_media_type"),
    ],
)  # fmt: skip
def test_client_errors_keep_their_codes_in_our_words(
    settings: ServeSettings, kwargs: dict, status: int, code: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/predict", **kwargs)

    message = assert_error(run(create_app(settings), scenario), status, code)
    # Parser and decoder vocabulary stays in the log.
    for internal in ("boundary", "index", "decoder", "PIL", "bytes not processed", "UploadFile"):
        assert internal not in message


def test_unknown_routes_and_methods(settings: ServeSettings) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.get("/nope"), await client.delete("/v1/predict")

    missing, wrong_method = run(create_app(settings), scenario)
    assert "see /docs" in assert_error(missing, 404, "not_found")
    assert "see /docs" in assert_error(wrong_method, 405, "method_not_allowed")


def _png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((28, 28), 40, np.uint8)).save(buf, "PNG")
    return buf.getvalue()

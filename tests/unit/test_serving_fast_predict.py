"""The lean POST /v1/predict path: its multipart slicing agrees with the full parser, and the
app answers the same through it as through the FastAPI route it falls back to."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.serving.app import create_app
from product_classifier.serving.fast_predict import (
    file_parts,
    multipart_boundary,
    single_file_part,
)
from product_classifier.serving.settings import ServeSettings

BOUNDARY = b"----pc-test-boundary-7MA4YWxk"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY.decode()}"


def body_of(parts: list[tuple[bytes, bytes]], boundary: bytes = BOUNDARY) -> bytes:
    """Multipart body from (part headers, content) pairs, written the way clients write it."""
    out = b""
    for headers, content in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def file_part(content: bytes, name: bytes = b"file", filename: bytes = b"a.png") -> tuple:
    disposition = b'Content-Disposition: form-data; name="' + name + b'"; filename="'
    return (disposition + filename + b'"\r\nContent-Type: image/png', content)


def full_parser(body: bytes, boundary: bytes = BOUNDARY) -> list[tuple[str, Any]]:
    """What Starlette's multipart parser (the FastAPI route's) makes of the same body."""

    async def parse() -> list[tuple[str, Any]]:
        async def stream() -> Any:
            yield body

        headers = Headers({"content-type": f"multipart/form-data; boundary={boundary.decode()}"})
        form = await MultiPartParser(headers, stream()).parse()
        items = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append((key, await value.read()))
            else:
                items.append((key, value))
        return items

    return asyncio.run(parse())


def full_parser_files(body: bytes, boundary: bytes = BOUNDARY) -> list[tuple[str | None, bytes]]:
    """(file name, content) of each file part, as Starlette's parser sees them."""

    async def parse() -> list[tuple[str | None, bytes]]:
        async def stream() -> Any:
            yield body

        headers = Headers({"content-type": f"multipart/form-data; boundary={boundary.decode()}"})
        form = await MultiPartParser(headers, stream()).parse()
        return [
            (value.filename, await value.read())
            for _, value in form.multi_items()
            if isinstance(value, UploadFile)
        ]

    return asyncio.run(parse())


@given(
    content=st.binary(max_size=2000),
    filename=st.from_regex(rb"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
)
@settings(max_examples=200, deadline=None)
def test_slicing_agrees_with_the_full_parser(content: bytes, filename: bytes) -> None:
    body = body_of([file_part(content, filename=filename)])
    assert single_file_part(body, BOUNDARY) == content
    assert full_parser(body) == [("file", content)]


@given(
    head=st.binary(max_size=200),
    tail=st.binary(max_size=200),
    joiner=st.sampled_from([b"", b"\r\n", b"\r\n--", b"--", b"\r\n--" + BOUNDARY]),
    after=st.sampled_from([b"X", b"-", b" ", b"\r\n", b"--"]),
)
@settings(max_examples=300, deadline=None)
def test_never_disagrees_with_the_full_parser(
    head: bytes, tail: bytes, joiner: bytes, after: bytes
) -> None:
    """Content that looks like a boundary: the lean parser answers like the full one, or
    declines (None) and leaves it to the full one; it never slices differently."""
    content = head + joiner + after + tail
    body = body_of([file_part(content)])
    lean = single_file_part(body, BOUNDARY)
    try:
        full = full_parser(body)
    except Exception:  # the full parser rejects it: the lean one must not accept it
        assert lean is None
        return
    if lean is not None:
        assert full == [("file", lean)]
    if b"\r\n--" + BOUNDARY not in content:
        assert lean == content  # the common case always takes the lean path


@given(
    files=st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_. éü-]{1,12}", fullmatch=True), st.binary(max_size=300)
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=150, deadline=None)
def test_batch_slicing_agrees_with_the_full_parser(files: list[tuple[str, bytes]]) -> None:
    body = body_of([file_part(data, b"files", name.encode()) for name, data in files])
    lean = file_parts(body, BOUNDARY, b"files")
    full = full_parser(body)
    assert full == [("files", data) for _, data in files]
    if lean is not None:
        assert lean == full_parser_files(body)
    if not any(b"\r\n--" + BOUNDARY in data for _, data in files):
        assert lean == files  # the common case always takes the lean path


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(body_of([file_part(b"x"), file_part(b"y")]), id="two-parts"),
        pytest.param(body_of([file_part(b"x", name=b"files")]), id="other-field"),
        pytest.param(
            body_of([(b'Content-Disposition: form-data; name="file"', b"x")]), id="no-filename"
        ),
        pytest.param(b"preamble\r\n" + body_of([file_part(b"x")]), id="preamble"),
        pytest.param(body_of([file_part(b"x")]) + b"epilogue", id="epilogue"),
        pytest.param(body_of([file_part(b"x")])[:-8], id="truncated"),
        pytest.param(body_of([file_part(b"x", filename=b'a\\"b')]), id="quoted-pair"),
        pytest.param(
            body_of([(b'Content-Disposition: form-data; filename="a.png"; name="file"', b"x")]),
            id="unusual-order",
        ),
        pytest.param(b"", id="empty"),
    ],
)
def test_anything_unusual_is_left_to_the_full_parser(body: bytes) -> None:
    assert single_file_part(body, BOUNDARY) is None


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        (b"multipart/form-data; boundary=abc", b"abc"),
        (b'multipart/form-data; boundary="a b c"', b"a b c"),
        (b"Multipart/Form-Data;BOUNDARY=xyz", b"xyz"),
        (b"multipart/form-data", None),
        (b"multipart/form-data; charset=utf-8; boundary=x", None),
        (b"multipart/mixed; boundary=x", None),
        (b'multipart/form-data; boundary="unterminated', None),
        (b"multipart/form-data; boundary=" + b"a" * 71, None),
        (b"application/octet-stream", None),
    ],
)
def test_multipart_boundary(content_type: bytes, boundary: bytes | None) -> None:
    assert multipart_boundary([(b"host", b"x"), (b"content-type", content_type)]) == boundary


# -- in the app ---------------------------------------------------------------------------------


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app_settings(tmp_path: Path) -> ServeSettings:
    model = build_contract_model(tmp_path / "model.onnx")
    write_model_card(model)
    return ServeSettings(model_path=model)


def _post(client: httpx.AsyncClient, body: bytes, boundary: bytes = BOUNDARY) -> Any:
    content_type = b"multipart/form-data; boundary=" + boundary
    return client.post("/v1/predict", content=body, headers={"content-type": content_type.decode()})


def test_fast_path_and_route_give_the_same_answers(app_settings: ServeSettings) -> None:
    app = create_app(app_settings)
    bodies = {
        "ok": [file_part(_png(1))],
        "text": [file_part(b"hello, not an image")],
        "empty": [file_part(b"")],
        "truncated": [file_part(_png(2)[:40])],
    }

    async def scenario() -> dict[str, list[tuple[int, dict[str, Any]]]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                out = {}
                for name, parts in bodies.items():
                    fast = await _post(client, body_of(parts))
                    # An extra form field sends the same upload through FastAPI's parser.
                    routed = await _post(
                        client,
                        body_of([*parts, (b'Content-Disposition: form-data; name="note"', b"n")]),
                    )
                    out[name] = [(r.status_code, r.json()) for r in (fast, routed)]
                return out

    answers = asyncio.run(scenario())
    assert app.state.fast_path.answered == len(bodies)
    assert app.state.fast_path.replayed == len(bodies)
    for name, ((fast_status, fast), (routed_status, routed)) in answers.items():
        assert fast_status == routed_status, name
        assert fast.pop("request_id") != routed.pop("request_id"), name
        assert fast == routed, name
    assert answers["ok"][0][0] == 200
    assert answers["text"][0][1]["error"]["code"] == "unsupported_media_type"
    assert answers["empty"][0][1]["error"]["code"] == "empty_file"


def test_batch_fast_path_and_route_give_the_same_answers(app_settings: ServeSettings) -> None:
    app = create_app(app_settings)
    parts = [
        file_part(_png(1), b"files", b"one.png"),
        file_part(b"not an image", b"files", b"notes.txt"),
        file_part(_png(2), b"files", b"dir/two.png"),
        file_part(b"", b"files", b"empty.png"),
    ]
    note = (b'Content-Disposition: form-data; name="note"', b"n")

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answers = []
                for body in (body_of(parts), body_of([*parts, note])):
                    response = await client.post(
                        "/v1/predict/batch",
                        content=body,
                        headers={"content-type": CONTENT_TYPE},
                    )
                    answers.append((response.status_code, response.json()))
                return answers

    (fast_status, fast), (routed_status, routed) = asyncio.run(scenario())
    assert (app.state.fast_path.answered, app.state.fast_path.replayed) == (1, 1)
    assert fast_status == routed_status == 200
    assert fast.pop("request_id") != routed.pop("request_id")
    assert fast == routed
    results = fast["results"]
    assert [r["filename"] for r in results] == ["one.png", "notes.txt", "two.png", "empty.png"]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        "unsupported_media_type",
        None,
        "empty_file",
    ]


def test_too_many_batch_files_are_left_to_the_route(app_settings: ServeSettings) -> None:
    app = create_app(app_settings.model_copy(update={"max_batch_files": 2}))
    parts = [file_part(_png(i), b"files", f"{i}.png".encode()) for i in range(3)]

    async def scenario() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.post(
                    "/v1/predict/batch",
                    content=body_of(parts),
                    headers={"content-type": CONTENT_TYPE},
                )

    response = asyncio.run(scenario())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_files"
    assert app.state.fast_path.replayed == 1


def test_fast_path_keeps_the_upload_limit(app_settings: ServeSettings) -> None:
    app = create_app(app_settings.model_copy(update={"max_upload_bytes": 1000}))

    async def scenario() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await _post(client, body_of([file_part(b"\x89PNG" + b"0" * 5000)]))

    response = asyncio.run(scenario())
    assert response.status_code == 413
    assert response.json()["error"]["code"] in {"payload_too_large", "file_too_large"}

"""A lean path for ``POST /v1/predict`` and ``/v1/predict/batch``, the routes that carry traffic.

For a 28x28 upload FastAPI's route machinery used to cost about as much CPU as the model
itself: routing, dependency resolution, python-multipart's streaming parser feeding a
SpooledTemporaryFile, the exception-handling layers (docs/performance.md, "Where the time
goes", splits a request's CPU into model and HTTP). This pure-ASGI middleware, the innermost
one, answers the common request itself: a ``multipart/form-data`` body whose parts are all
file uploads of the route's field (one ``file``; up to ``max_batch_files`` ``files`` for the
batch route). It reads the body (through the outer layers, so the size limit, the body
deadline, API keys, CORS, the request id, metrics and the access log all still apply), slices
the files out of it with ``bytes.find`` and hands them to the same :class:`ModelService` calls
as the FastAPI routes, so the answers and errors are the same.

Anything else, or anything it does not fully understand (another field, a quoted-pair in a
header, a preamble, too many files), is replayed untouched to the FastAPI route, which stays
the single definition of the endpoint's contract and of its error messages.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_classifier.serving.errors import ApiError, error_response
from product_classifier.serving.routes import BATCH_PATH
from product_classifier.serving.security import sanitize_filename

PREDICT_PATH = "/v1/predict"
_PATHS = frozenset({PREDICT_PATH, BATCH_PATH})

_MULTIPART = b"multipart/form-data"
# RFC 2046 boundary characters (bare boundaries can't have the space). Anything fancier goes
# to the FastAPI route.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=?]{1,70}")
_QUOTED_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# A file field, written the way every client library writes it (no quoted-pairs, no RFC 2231).
_DISPOSITION = re.compile(
    rb'\s*form-data\s*;\s*name="([a-z]+)"\s*;\s*filename="([^"\\\r\n]+)"\s*', re.IGNORECASE
)
_JSON_HEADERS = [(b"content-type", b"application/json")]


def multipart_boundary(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The boundary of a ``multipart/form-data`` request, or None if the type is anything else.

    Only the plain ``multipart/form-data; boundary=X`` form is understood; other parameters or
    odd spacing return None (and so the full parser).
    """
    for name, value in headers:
        if name == b"content-type":
            media_type, semicolon, parameter = value.partition(b";")
            if not semicolon or media_type.strip().lower() != _MULTIPART:
                return None
            key, equals, boundary = parameter.strip().partition(b"=")
            if not equals or key.lower() != b"boundary":
                return None
            if boundary[:1] == b'"':
                boundary = boundary[1:-1] if boundary[-1:] == b'"' else b""
                pattern = _QUOTED_BOUNDARY
            else:
                pattern = _BOUNDARY
            return boundary if pattern.fullmatch(boundary) else None
    return None


def file_parts(body: bytes, boundary: bytes, field: bytes) -> list[tuple[str, bytes]] | None:
    """(file name, content) of every part of ``body`` if each is a ``field`` file upload.

    None means "not the simple case", never "invalid": the caller then lets the full parser
    decide (and word the error).
    """
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        return None  # a preamble
    separator = b"\r\n" + delimiter
    parts: list[tuple[str, bytes]] = []
    position = len(delimiter) + 2
    while True:
        headers_end = body.find(b"\r\n\r\n", position)
        if headers_end < 0:
            return None
        content_start = headers_end + 4
        content_end = body.find(separator, content_start)
        if content_end < 0:
            return None
        filename = _file_field(body[position:headers_end], field)
        if filename is None:
            return None
        parts.append((filename, body[content_start:content_end]))
        after = content_end + len(separator)
        marker = body[after : after + 2]
        if marker == b"--":
            # The close delimiter, then nothing but an optional CRLF (no epilogue).
            return parts if body[after + 2 :] in (b"", b"\r\n") else None
        if marker != b"\r\n":
            return None  # the "boundary" was only a prefix of something else
        position = after + 2


def _file_field(headers: bytes, field: bytes) -> str | None:
    """The file name if the part's headers say it is a ``field`` file upload, else None."""
    disposition = None
    for line in headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        if name.strip().lower() == b"content-disposition":
            if disposition is not None:
                return None
            disposition = value
    match = _DISPOSITION.fullmatch(disposition) if disposition is not None else None
    if match is None or match.group(1) != field:
        return None
    try:
        return match.group(2).decode("utf-8")  # as Starlette decodes it
    except UnicodeDecodeError:
        return None


def single_file_part(body: bytes, boundary: bytes) -> bytes | None:
    """The content of the only part of ``body`` if it is the ``file`` upload, else None."""
    parts = file_parts(body, boundary, b"file")
    return parts[0][1] if parts is not None and len(parts) == 1 else None


def json_body(content: dict[str, Any]) -> bytes:
    # orjson: the same JSON values as the route's JSONResponse (exponents may be written
    # 1e-5 instead of 1e-05), at a fifteenth of json.dumps's ~9 us per response.
    return orjson.dumps(content)


class FastPathStats:
    """How many predict requests took which path (``app.state.fast_path``; tests read it)."""

    def __init__(self) -> None:
        self.answered = 0  # answered by the lean path
        self.replayed = 0  # body read, then handed to the FastAPI route


class FastPredictMiddleware:
    def __init__(self, app: ASGIApp, *, stats: FastPathStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in _PATHS
            or scope["method"] != "POST"
            or (boundary := multipart_boundary(scope["headers"])) is None
        ):
            await self.app(scope, receive, send)
            return
        app_state = scope["app"].state
        service = app_state.service
        if service is None or not app_state.ready:
            await self.app(scope, receive, send)  # the route words the 503
            return
        try:
            body = await _read_body(receive)
        except ApiError as exc:  # 408 body deadline, 413 size limit: as the route would say
            await _send_error(scope, receive, send, exc)
            return
        if body is None:
            return  # the client went away; the access log records a 499
        single = scope["path"] == PREDICT_PATH
        parts = file_parts(body, boundary, b"file" if single else b"files")
        limit = 1 if single else app_state.settings.max_batch_files
        if parts is None or not 1 <= len(parts) <= limit:
            self.stats.replayed += 1  # unusual, or an error the route words
            await self.app(scope, _replay(body, receive), send)
            return
        self.stats.answered += 1
        try:
            if single:
                result = await service.predict_bytes(parts[0][1])
            else:
                uploads = [(sanitize_filename(name), data) for name, data in parts]
                result = {"results": await service.predict_many(uploads)}
        except ApiError as exc:
            await _send_error(scope, receive, send, exc)
            return
        result["model_version"] = service.model_version
        result["request_id"] = scope["state"].get("request_id")
        content = json_body(result)
        headers = [(b"content-length", str(len(content)).encode("latin-1")), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the real stream: a disconnect, if the client leaves

    return replay


async def _send_error(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
    response = error_response(Request(scope), exc.status_code, exc.code, exc.message, exc.headers)
    await response(scope, receive, send)

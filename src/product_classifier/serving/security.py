"""Optional API-key authentication for ``/v1``, filename sanitising, and their wiring.

Auth is off unless ``PRODUCT_CLASSIFIER_API_KEYS`` lists keys. A client then sends one of them
as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; anything else under ``/v1`` gets a JSON
401 before a byte of the body is read, so an anonymous client cannot make the service parse a
10 MB upload. ``/health``, ``/ready`` and the docs stay open for probes and people. Keys are
compared as SHA-256 digests with :func:`hmac.compare_digest`, against every configured key, so
the time taken says nothing about how much of a key was right or which key matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from product_classifier.serving.errors import error_response
from product_classifier.serving.limits import BodyTimeoutMiddleware
from product_classifier.serving.settings import MIN_API_KEY_LENGTH, ServeSettings

__all__ = ["MIN_API_KEY_LENGTH", "ApiKeyMiddleware", "install_security", "sanitize_filename"]

PROTECTED_PREFIX = "/v1"
API_KEY_HEADER = "X-API-Key"
_API_KEY_HEADER_RAW = API_KEY_HEADER.lower().encode("ascii")
_BEARER = re.compile(rb"\s*bearer\s+(\S+)\s*", re.IGNORECASE)
MAX_FILENAME_CHARS = 255
# Path separators and what Windows or an HTML page would trip over; control and format
# characters (Unicode category C*, e.g. NUL, CR, the right-to-left override) and line
# separators are replaced as well.
_UNSAFE_FILENAME_CHARS = frozenset('<>:"/\\|?*')


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def is_protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request presents: ``X-API-Key``, else an ``Authorization: Bearer`` token."""
    bearer: bytes | None = None
    for name, value in headers:
        if name == _API_KEY_HEADER_RAW and value.strip():
            return value.strip()
        if name == b"authorization" and (match := _BEARER.fullmatch(value)):
            bearer = match.group(1)
    return bearer


class ApiKeyMiddleware:
    """Pure ASGI (no per-request task or body buffering): checks headers, then steps aside."""

    def __init__(self, app: ASGIApp, *, api_keys: Iterable[str | SecretStr]) -> None:
        self.app = app
        self._digests = [
            _digest((k.get_secret_value() if isinstance(k, SecretStr) else k).encode("utf-8"))
            for k in api_keys
        ]

    def accepts(self, candidate: bytes | None) -> bool:
        if candidate is None:
            return False
        digest = _digest(candidate)
        matched = False
        for expected in self._digests:  # no early exit: every key costs the same
            matched |= hmac.compare_digest(digest, expected)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"  # CORS preflights never carry credentials
            or not is_protected(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        candidate = presented_key(scope["headers"])
        if self.accepts(candidate):
            await self.app(scope, receive, send)
            return
        message = (
            f"missing API key: send it as '{API_KEY_HEADER}: KEY' or 'Authorization: Bearer KEY'"
            if candidate is None
            else "invalid API key"
        )
        response = error_response(
            Request(scope),
            401,
            "unauthorized",
            message,
            # Connection: close because the body (maybe a large upload) is left unread.
            {"WWW-Authenticate": 'Bearer realm="product-classifier"', "Connection": "close"},
        )
        await response(scope, receive, send)


def sanitize_filename(name: str | None) -> str | None:
    """A client's upload filename, made safe to echo: base name only, no control characters
    or path/markup characters, at most 255 characters. It is never used as a path."""
    if not name:
        return None
    base = re.split(r"[/\\]", name)[-1]
    cleaned = "".join(
        "_"
        if char in _UNSAFE_FILENAME_CHARS
        or unicodedata.category(char)[0] == "C"
        or unicodedata.category(char) in ("Zl", "Zp")
        else char
        for char in base
    )
    cleaned = cleaned.strip().strip(".")
    return cleaned[:MAX_FILENAME_CHARS] or None


def _document_api_keys(app: FastAPI) -> None:
    """Add the key schemes, per-operation security and the 401 to the OpenAPI schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None and app.openapi_schema.get("x-api-keys"):
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(
            {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
                "BearerKey": {"type": "http", "scheme": "bearer"},
            }
        )
        for path, operations in schema.get("paths", {}).items():
            if not is_protected(path):
                continue
            for operation in operations.values():
                operation["security"] = [{"ApiKeyHeader": []}, {"BearerKey": []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": "Missing or invalid API key",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                }
        schema["x-api-keys"] = True
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: ServeSettings) -> None:
    """Add the body-read deadline and, when keys are configured, API-key auth.

    Call before CORS is added so CORS stays outside (a 401 still carries CORS headers and
    preflights are answered without a key); the request-id middleware must stay outermost.
    """
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    if settings.api_keys:
        app.add_middleware(ApiKeyMiddleware, api_keys=settings.api_keys)
        _document_api_keys(app)

"""Every error leaves the service as JSON ``{"error": {"code", "message"}, "request_id"}``.

``code`` is stable and machine-readable; ``message`` is for humans. FastAPI's own errors
(validation, 404, 405, multipart parsing) are reshaped into the same format.

A message is written by this service, never an exception's text: the multipart parser's and
Starlette's words are replaced by fixed sentences per code (they name parser internals), and
anything unexpected is a 500 ``internal_error`` with a generic message and the request id, the
exception itself going to the log only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from product_classifier.preprocessing import PreprocessingError

logger = logging.getLogger(__name__)

# Fallback codes for HTTPExceptions raised by FastAPI/Starlette themselves.
_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "service_unavailable",
}

# What a client reads for Starlette's own HTTPExceptions (their detail is not passed on).
_STATUS_MESSAGES = {
    404: "no such endpoint; see /docs",
    405: "method not allowed for this endpoint; see /docs",
}
_MALFORMED_MULTIPART = (
    "the request body is not valid multipart/form-data; send the image as a file part"
)
_MAX_FILES = re.compile(r"Maximum number of files is (\d+)")
INTERNAL_ERROR_MESSAGE = "internal server error"  # + the request_id beside it

# PreprocessingError.code -> (HTTP status, public code).
_PREPROCESSING_STATUS = {
    "empty_file": (400, "empty_file"),
    "not_an_image": (415, "unsupported_media_type"),
    "corrupt_image": (400, "corrupt_image"),
    "invalid_image": (400, "invalid_image"),
    "image_too_large": (413, "image_too_large"),
}


class ApiError(StarletteHTTPException):
    """An expected client-facing error with a stable ``code``."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message

    @classmethod
    def from_preprocessing(cls, exc: PreprocessingError) -> ApiError:
        status, code = _PREPROCESSING_STATUS.get(exc.code, (400, exc.code))
        message = exc.message
        if code == "unsupported_media_type":
            message = f"{exc.message}; send a PNG, JPEG, WebP, GIF, BMP or TIFF image"
        return cls(status, code, message)

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def request_id_of(request: Request) -> str | None:
    state = request.scope.get("state")
    return state.get("request_id") if state else None


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    content: dict[str, Any] = {
        "error": {"code": code, "message": message},
        "request_id": request_id_of(request),
    }
    return JSONResponse(content, status_code=status_code, headers=headers)


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)
    status = exc.status_code
    detail = str(exc.detail)
    code = _STATUS_CODES.get(status, f"http_{status}")
    message = _STATUS_MESSAGES.get(status) or _status_phrase(status)
    if status == 400 and (limit := _MAX_FILES.search(detail)):
        # Starlette's multipart parser stops at the route's max_files.
        status, code = 413, "too_many_files"
        message = f"too many files; at most {limit.group(1)} per request"
    elif status == 400:
        # The parser's own words name its internals (a boundary index, a header byte).
        logger.debug("malformed multipart body: %s", detail)
        code, message = "invalid_multipart", _MALFORMED_MULTIPART
    return error_response(request, status, code, message, exc.headers)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "request failed"


# Validation errors whose message is an exception's text (e.g. FastAPI's "Expected
# UploadFile, received: <class 'str'>") rather than pydantic's fixed sentences.
_EXCEPTION_TEXT_TYPES = frozenset({"value_error", "assertion_error"})


def _field_problem(err: Any, loc: list[str]) -> str:
    if loc and loc[0] in ("file", "files") and err.get("type") != "missing":
        return "must be a file: a multipart/form-data part with a filename"
    if err.get("type") in _EXCEPTION_TEXT_TYPES:
        return "invalid value"
    return str(err.get("msg", "invalid value"))


def _describe_validation(errors: list[Any]) -> tuple[str, str]:
    """FastAPI's validation error list -> (code, one readable sentence)."""
    parts = []
    missing_files = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "request"
        if err.get("type") == "missing" and loc and loc[0] in ("file", "files"):
            missing_files.append(loc[0])
        parts.append(f"{field}: {_field_problem(err, loc)}")
    if missing_files and len(missing_files) == len(errors):
        name = missing_files[0]
        return (
            "missing_file",
            f"no file uploaded: send multipart/form-data with the image in the field {name!r}",
        )
    return "validation_error", "; ".join(parts)


async def _validation_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, message = _describe_validation(list(exc.errors()))
    return error_response(request, 422, code, message)


async def _unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    # Last resort behind RequestContextMiddleware (which normally catches these first).
    logger.error("unhandled error (request_id=%s)", request_id_of(request), exc_info=exc)
    return error_response(request, 500, "internal_error", INTERNAL_ERROR_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_exception_handler)
    app.add_exception_handler(Exception, _unhandled_exception_handler)

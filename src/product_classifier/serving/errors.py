"""Every error leaves the service as JSON ``{"error": {"code", "message"}, "request_id"}``.

``code`` is stable and machine-readable; ``message`` is for humans. FastAPI's own errors
(validation, 404, 405, multipart parsing) are reshaped into the same format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
    message = str(exc.detail)
    code = _STATUS_CODES.get(status, f"http_{status}")
    if status == 400 and message.startswith("Too many files"):
        # Starlette's multipart parser stops at the route's max_files.
        status, code = 413, "too_many_files"
    elif status == 400:
        code = "invalid_multipart"
    return error_response(request, status, code, message, exc.headers)


def _describe_validation(errors: list[Any]) -> tuple[str, str]:
    """FastAPI's validation error list -> (code, one readable sentence)."""
    parts = []
    missing_files = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "request"
        if err.get("type") == "missing" and loc and loc[0] in ("file", "files"):
            missing_files.append(loc[0])
        parts.append(f"{field}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
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
    return error_response(request, 500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_exception_handler)
    app.add_exception_handler(Exception, _unhandled_exception_handler)

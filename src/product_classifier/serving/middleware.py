"""One pure-ASGI middleware for what every request needs, kept cheap for the hot path.

* request id: ``X-Request-ID`` when it looks sane, else a fresh 32-hex-digit id (a random
  per-process prefix and a counter: unique like a uuid4, 0.5 us instead of 4); stored in
  ``scope["state"]["request_id"]`` (``request.state.request_id``) and echoed in the response;
* body size limit: a declared ``Content-Length`` over the limit is refused without parsing
  the body, and the body is counted while it streams in (chunked uploads have no length).
  Clients such as urllib and requests send a whole body before they read: closing the
  connection on unread bytes resets it and they never see the 413. So a declared body up to
  ``discard_bytes`` is read and dropped first (a larger one, or one whose client waits for
  ``100 Continue``, is answered at once) and the connection then closed. A chunked body is
  answered as soon as it passes the limit; on a keep-alive connection uvicorn drops the rest;
* drain: while the worker drains after SIGTERM (serving/drain.py), every response carries
  ``Connection: close``, so keep-alive clients reconnect (elsewhere, once the load balancer
  has caught up) instead of being cut off when the worker exits;
* last-resort error handling: anything unexpected is logged and answered with a JSON 500.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_classifier.serving.drain import Drain
from product_classifier.serving.errors import ApiError, error_response

logger = logging.getLogger(__name__)

_REQUEST_ID_OK = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_CONNECTION_CLOSE = (b"connection", b"close")


class PayloadTooLargeError(ApiError):
    def __init__(self, limit: int, *, close: bool = False) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"the request body is larger than the limit of {limit} bytes",
            {"Connection": "close"} if close else None,
        )


class RequestIds:
    """Unique request ids: 16 random hex digits per process, then a 16-digit counter.

    Ids only need to be unique (they tie a log line to a response); uuid4 reads 16 bytes from
    the OS for each one, which showed up at 3% of a 28x28 request's CPU.
    """

    def __init__(self) -> None:
        self._pid = -1

    def next(self) -> str:
        if os.getpid() != self._pid:  # new process (also a fork after the app was built)
            self._pid = os.getpid()
            self._prefix = secrets.token_hex(8)
            self._counter = itertools.count(1)
        return f"{self._prefix}{next(self._counter):016x}"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        path_limits: dict[str, int] | None = None,
        drain: Drain | None = None,
        discard_bytes: int = 0,
        discard_timeout_s: float = 60.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = path_limits or {}
        self.drain = drain if drain is not None else Drain()
        self.discard_bytes = discard_bytes
        self.discard_timeout_s = discard_timeout_s
        self._ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        raw_id: bytes | None = None
        declared: bytes | None = None
        expect: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                raw_id = value
            elif name == b"content-length":
                declared = value
            elif name == b"expect":
                expect = value
        if raw_id is not None and _REQUEST_ID_OK.fullmatch(raw_id):
            request_id = raw_id.decode("ascii")
        else:
            request_id = self._ids.next()
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("ascii"))
        started = False
        drain = self.drain

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), id_header]
                if drain.active and _CONNECTION_CLOSE not in headers:
                    headers.append(_CONNECTION_CLOSE)  # uvicorn closes after this response
                message["headers"] = headers
            await send(message)

        limit = self.path_limits.get(scope["path"], self.max_body_bytes)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # A client waiting for "100 Continue" has not sent the body: answer at once. Others
            # may be sending it all before they read: drop it first (bounded), then close.
            if expect is None and int(declared) <= self.discard_bytes:
                await self._discard(receive)
            error = PayloadTooLargeError(limit, close=True)
            await self._respond(scope, receive, send_with_id, error)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(limit)
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except PayloadTooLargeError as exc:
            # Normally turned into a response by the app's handlers; this is the fallback.
            if started:
                raise
            await self._respond(scope, receive, send_with_id, exc)
        except Exception:
            logger.exception("unhandled error (request_id=%s)", request_id)
            if started:
                raise
            response = error_response(
                Request(scope), 500, "internal_error", "internal server error"
            )
            await response(scope, receive, send_with_id)

    async def _discard(self, receive: Receive) -> None:
        """Read and drop a body, up to ``discard_bytes`` in ``discard_timeout_s``.

        Bounded both ways, so a huge or slow upload costs at most that much reading (never
        memory: each chunk is dropped) before the 413 and the close.
        """
        received = 0
        try:
            async with asyncio.timeout(self.discard_timeout_s):
                while received <= self.discard_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    received += len(message.get("body", b""))
        except TimeoutError:
            return

    @staticmethod
    async def _respond(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
        response = error_response(
            Request(scope), exc.status_code, exc.code, exc.message, exc.headers
        )
        await response(scope, receive, send)

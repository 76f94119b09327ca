"""A per-worker cap on the ``/v1`` requests in flight (``max_in_flight``).

The micro-batcher's bounded queue caps the images waiting for the model, but a request holds
memory from its first body byte: without a cap, a flood of uploads buffers bodies until the
worker runs out of memory. Beyond the cap the request is answered at once with a JSON 503
``overloaded`` and ``Retry-After``, before its body is read. Probes (``/health``, ``/ready``)
and ``/metrics`` are never counted nor refused, so an overloaded worker still reports itself.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from product_classifier.serving.errors import error_response

LIMITED_PREFIX = "/v1/"


class InFlightLimitMiddleware:
    """Pure ASGI (no per-request task or wrapper): one counter on the event loop."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, retry_after_s: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.refused = 0
        self._headers = {"Retry-After": str(retry_after_s)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.refused += 1
            response = error_response(
                Request(scope),
                503,
                "overloaded",
                f"this worker is serving its limit of {self.max_in_flight} requests; retry later",
                self._headers,
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

"""Request logs and Prometheus metrics for the service, installed with one call.

``install_observability(app, settings)`` (the last line of ``create_app``) adds:

* an outermost pure-ASGI middleware that times every request, counts it in the RED metrics and
  writes ONE JSON line per request on the ``product_classifier.access`` logger: request_id,
  method, route (the template, never the raw path), status, latency_ms, request_bytes,
  upload_bytes, predictions, category, confidence, needs_review, model_version. Image bytes and
  file names are never logged. Probes and scrapes (/health, /ready, /metrics) answered with
  2xx/3xx are logged at DEBUG, so they don't bury the traffic; 5xx are logged at WARNING;
* ``GET /metrics`` (unless ``metrics_enabled`` is false), restricted to
  ``metrics_allowed_networks`` and, when ``metrics_token`` is set, a bearer token;
* around the app's lifespan: model info and readiness metrics, hooks on the model service
  (each prediction) and the micro-batcher (each model call), and the startup / shutdown lines.

The request id is the one ``RequestContextMiddleware`` sets (``X-Request-ID`` or a fresh one);
this middleware runs outside it and reads it from the scope once the response has started.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_classifier.inference.cascade import CascadePredictor
from product_classifier.serving.client_address import resolve_client
from product_classifier.serving.errors import ApiError, error_response
from product_classifier.serving.logging_config import (
    ACCESS_LOGGER,
    CURRENT_REQUEST,
    ensure_logging,
    lean_log_records,
)
from product_classifier.serving.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from product_classifier.serving.settings import ServeSettings

logger = logging.getLogger(__name__)
access_logger = logging.getLogger(ACCESS_LOGGER)

METRICS_PATH = "/metrics"
OTHER = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_QUIET_ROUTES = frozenset({"/health", "/ready", METRICS_PATH})
# Status recorded when the client went away before any response was sent (nginx's code).
CLIENT_CLOSED = 499


class RequestRecord:
    """What one request collects on its way: filled by the prediction hook, logged at the end."""

    __slots__ = (
        "_scope",
        "category",
        "confidence",
        "needs_review",
        "predictions",
        "review",
        "upload_bytes",
    )

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self.predictions = 0
        self.review = 0
        self.upload_bytes: int | None = None
        self.category: str | None = None
        self.confidence: float | None = None
        self.needs_review: bool | None = None

    @property
    def request_id(self) -> str | None:
        # Set by RequestContextMiddleware, which runs inside this one.
        state = self._scope.get("state")
        return state.get("request_id") if state else None

    def add_prediction(self, result: dict[str, Any], upload_bytes: int) -> None:
        self.predictions += 1
        self.upload_bytes = (self.upload_bytes or 0) + upload_bytes
        flagged = bool(result["needs_review"])
        self.review += flagged
        if self.predictions == 1:
            self.category = result["category"]
            self.confidence = result["confidence"]
            self.needs_review = flagged
        else:  # a batch: per-item details are in the response, the log keeps a summary
            self.category = None
            self.confidence = None
            self.needs_review = self.review > 0


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class MetricsAccess:
    """Who may read /metrics: the real client's network, then an optional bearer token.

    The real client is the TCP peer, or the address a trusted proxy forwarded for
    (serving/client_address.py). A forwarded request from a peer that is not a trusted proxy
    is refused: behind a reverse proxy every client would otherwise look like the proxy.
    """

    def __init__(
        self, networks: list[str], token: str | None, trusted_proxies: list[str] | None = None
    ) -> None:
        self.networks = [ipaddress.ip_network(net, strict=False) for net in networks]
        self.trusted_proxies = [
            ipaddress.ip_network(net, strict=False) for net in trusted_proxies or ()
        ]
        self._token = f"Bearer {token}".encode() if token else None

    def _client_allowed(self, scope: Scope) -> bool:
        if not self.networks:
            return True
        client = resolve_client(scope, self.trusted_proxies)
        if client.untrusted_forwarding or client.ip is None:
            return False  # an unvouched-for proxy, a unix socket or an unreadable chain
        return any(client.ip in net for net in self.networks)

    def check(self, scope: Scope) -> ApiError | None:
        if not self._client_allowed(scope):
            return ApiError(403, "forbidden", "metrics are not served to this client's network")
        if self._token is not None:
            sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(sent, self._token):
                return ApiError(
                    401,
                    "unauthorized",
                    "metrics need 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return None


class Observer:
    """Per-app observability state: metrics, route labels, hooks and the request log."""

    def __init__(self, app: FastAPI, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        self.access = MetricsAccess(
            settings.metrics_allowed_networks, token, settings.trusted_proxies
        )
        self.model_version: str | None = None
        self.requests_served = 0
        self._paths: frozenset[str] | None = None
        self._mounts: tuple[str, ...] = ()
        self._started = time.monotonic()

    # -- route labels ---------------------------------------------------------------------------

    def _all_routes(self) -> list[tuple[object, str | None]]:
        try:  # FastAPI >= 0.16x keeps included routers lazy: ask it for the effective routes
            from fastapi.routing import iter_route_contexts
        except ImportError:
            return [(route, getattr(route, "path", None)) for route in self.app.routes]
        return [(ctx.original_route, ctx.path) for ctx in iter_route_contexts(self.app.routes)]

    def _learn_routes(self) -> frozenset[str]:
        paths, mounts = set(), []
        for route, path in self._all_routes():
            if isinstance(route, Mount) and path is not None:
                mounts.append(path or "/")
            elif isinstance(path, str) and "{" not in path:
                paths.add(path)
        self._mounts = tuple(sorted(mounts, key=len, reverse=True))
        self._paths = frozenset(paths)
        return self._paths

    def route_label(self, scope: Scope) -> str:
        """The matched route's template; bounded by the app's routes, else ``"other"``."""
        route = scope.get("route")
        if route is not None:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                return path
        # Not routed: refused by a middleware first (413 by Content-Length), a mount, or a 404.
        paths = self._paths if self._paths is not None else self._learn_routes()
        path = scope["path"]
        if path in paths:
            return str(path)
        for mount in self._mounts:
            if mount == "/" or path == mount or path.startswith(mount + "/"):
                return mount
        return OTHER

    # -- per request ----------------------------------------------------------------------------

    def request_done(
        self, scope: Scope, record: RequestRecord, status: int, seconds: float
    ) -> None:
        method = scope["method"]
        if method not in _METHODS:
            method = OTHER
        route = self.route_label(scope)
        self.metrics.observe_request(method, route, status, seconds)
        self.requests_served += 1
        if status >= 500:
            level = logging.WARNING
        elif route in _QUIET_ROUTES and status < 400:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not access_logger.isEnabledFor(level):
            return
        fields = {
            "request_id": record.request_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000.0, 3),
            "request_bytes": _content_length(scope),
            "upload_bytes": record.upload_bytes,
            "predictions": record.predictions,
            "category": record.category,
            "confidence": None if record.confidence is None else round(record.confidence, 4),
            "needs_review": record.needs_review,
            "model_version": self.model_version,
        }
        access_logger.log(level, "request", extra={"fields": fields})

    def on_prediction(self, result: dict[str, Any], upload_bytes: int) -> None:
        """ModelService hook: one call per image classified (on the event loop)."""
        self.metrics.observe_prediction(
            result["category"], result["confidence"], result["needs_review"]
        )
        record = CURRENT_REQUEST.get()
        if record is not None:
            record.add_prediction(result, upload_bytes)

    # -- /metrics -------------------------------------------------------------------------------

    async def metrics_endpoint(self, request: Request) -> Response:
        denied = self.access.check(request.scope)
        if denied is not None:
            return error_response(
                request, denied.status_code, denied.code, denied.message, denied.headers
            )
        # Multiprocess mode reads one file per worker and metric type: keep it off the loop.
        body = await asyncio.get_running_loop().run_in_executor(None, self.metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # -- lifespan -------------------------------------------------------------------------------

    def started(self) -> None:
        service = self.app.state.service
        model = service.model
        predictor = model.predictor
        self.model_version = service.model_version
        self.metrics.set_model(service.model_version, model.sha256, predictor.class_names)
        # Hooks are attached after warm-up, so the warm-up image is not counted as traffic.
        service.on_prediction = self.on_prediction
        for batcher in service.batchers:  # the pictures' own too, when there is one
            batcher.on_batch = self.metrics.observe_batch
            batcher.on_timeout = self.metrics.observe_timeouts
            batcher.on_worker_died = self.metrics.observe_batcher_death
            batcher.on_worker_restarted = lambda: self.metrics.set_ready(True)
        if isinstance(predictor, CascadePredictor):
            predictor.on_batch = self.metrics.observe_cascade
        self.metrics.set_ready(True)
        logger.info(
            "startup",
            extra={
                "fields": {
                    "event": "startup",
                    "pid": os.getpid(),
                    "model_path": str(self.settings.model_path),
                    "model_version": service.model_version,
                    "sha256": model.sha256,
                    "sha256_verified": model.sha256_verified,
                    "providers": list(predictor.providers),
                    "metrics": self._metrics_mode(),
                }
            },
        )

    def _metrics_mode(self) -> str:
        if not self.settings.metrics_enabled:
            return "disabled"
        if self.metrics.multiprocess_dir is not None:
            return f"multiprocess:{self.metrics.multiprocess_dir}"
        return "in-process"

    def stopped(self, model_sha256: str | None) -> None:
        self.metrics.worker_exit()
        logger.info(
            "shutdown",
            extra={
                "fields": {
                    "event": "shutdown",
                    "pid": os.getpid(),
                    "model_path": str(self.settings.model_path),
                    "model_version": self.model_version,
                    "sha256": model_sha256,
                    "uptime_s": round(time.monotonic() - self._started, 1),
                    "requests_served": self.requests_served,
                }
            },
        )

    def wrap_lifespan(
        self, inner: Callable[[Any], AbstractAsyncContextManager[Any]]
    ) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            self._started = time.monotonic()
            with lean_log_records():
                async with inner(app) as state:
                    sha256 = app.state.service.model.sha256
                    self.started()
                    try:
                        yield state
                    finally:
                        self.metrics.set_ready(False)
                self.stopped(sha256)

        return lifespan


class ObservabilityMiddleware:
    """Outermost middleware: latency, status, route, metrics and the request log line."""

    def __init__(self, app: ASGIApp, *, observer: Observer) -> None:
        self.app = app
        self.observer = observer
        self.in_flight = observer.metrics.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = RequestRecord(scope)
        token = CURRENT_REQUEST.set(record)
        status = 0

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_watch)
        except asyncio.CancelledError:
            status = status or CLIENT_CLOSED
            raise
        except BaseException:
            status = status or 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.in_flight.dec()
            CURRENT_REQUEST.reset(token)
            self.observer.request_done(scope, record, status or CLIENT_CLOSED, elapsed)


def install_observability(app: FastAPI, settings: ServeSettings) -> Observer:
    """Request logs, /metrics and lifecycle metrics. Call it LAST in ``create_app``: it adds the
    outermost middleware, and a middleware added after it would hide its responses (a 401 from
    an auth layer, say) from the metrics and the log."""
    ensure_logging(settings.log_level, settings.log_format)
    observer = Observer(app, settings, ServiceMetrics())
    observer.metrics.set_ready(False)
    app.add_middleware(ObservabilityMiddleware, observer=observer)
    if settings.metrics_enabled:
        app.add_api_route(
            METRICS_PATH, observer.metrics_endpoint, methods=["GET"], include_in_schema=False
        )
    app.router.lifespan_context = observer.wrap_lifespan(app.router.lifespan_context)
    app.state.observer = observer
    return observer

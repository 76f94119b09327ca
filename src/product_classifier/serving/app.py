"""FastAPI application factory.

``create_app()`` builds the app without touching the model; the lifespan loads and verifies it,
warms it up, starts the micro-batcher and only then flips ``/ready`` to 200. Run it with
``product-classifier serve`` or ``uvicorn product_classifier.serving.app:create_app --factory``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from product_classifier import __version__
from product_classifier.inference.batcher import MicroBatcher, PredictFn
from product_classifier.inference.errors import ModelLoadError
from product_classifier.inference.expert import with_opinion
from product_classifier.inference.model_card import VerifiedModel, load_verified_model
from product_classifier.inference.predictor import PredictorOptions
from product_classifier.serving.admission import InFlightLimitMiddleware
from product_classifier.serving.drain import Drain, install_drain, nothing_to_undo
from product_classifier.serving.errors import install_error_handlers
from product_classifier.serving.fast_predict import FastPathStats, FastPredictMiddleware
from product_classifier.serving.middleware import RequestContextMiddleware
from product_classifier.serving.observability import install_observability
from product_classifier.serving.routes import BATCH_PATH, build_router
from product_classifier.serving.security import install_security
from product_classifier.serving.service import ModelService, upload_preprocessor
from product_classifier.serving.settings import ServeSettings, load_settings
from product_classifier.serving.ui import build_ui_router

logger = logging.getLogger(__name__)

# Room for multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

_DESCRIPTION = """Sorts product photos into the loaded model's categories (`GET /v1/categories`).

Upload an image as `multipart/form-data` (field `file`, or repeated `files` for a batch).
Every error is JSON `{"error": {"code", "message"}, "request_id"}`."""


# FastAPI's OpenTelemetry layer, switched off: the service has its own metrics and logs.
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _load_model(settings: ServeSettings) -> VerifiedModel:
    options = PredictorOptions(
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        providers=tuple(settings.providers) or None,
    )
    model = load_verified_model(
        settings.model_path,
        settings.card_path,
        verify=settings.verify_sha256,
        options=options,
        cascade=settings.model_variant == "cascade",
        cascade_threshold=settings.cascade_threshold,
    )
    # Warm the biggest batch too, so its buffers exist before the first burst of traffic.
    model.predictor.warmup(sorted({1, settings.max_batch_size}))
    if model.expert is not None:
        model.expert.warmup(sorted({1, settings.max_batch_size}))
    return model


def _batcher(predict: PredictFn, model: VerifiedModel, settings: ServeSettings) -> MicroBatcher:
    return MicroBatcher(
        predict,
        # Decoding runs in the batch's thread, with the model's own input spec.
        prepare_fn=upload_preprocessor(settings, model.predictor.spec),
        item_shape=(1, *model.predictor.spec.item_shape),
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        queue_size=settings.queue_size,
        concurrency=settings.batch_concurrency,
        timeout_s=settings.inference_timeout_s,
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServeSettings = app.state.settings
    loop = asyncio.get_running_loop()
    try:
        model = await loop.run_in_executor(None, partial(_load_model, settings))
    except ModelLoadError as exc:
        logger.error("cannot start: %s", exc)
        raise
    batcher = _batcher(model.predictor.predict_proba, model, settings)
    await batcher.start()
    picture_batcher = None
    if model.expert is not None:
        # Real pictures: the same preprocessing and model, plus the picture expert's opinion
        # (inference/expert.py), in a batcher of their own so 28x28 images never pay for it.
        picture_batcher = _batcher(with_opinion(model.predictor, model.expert), model, settings)
        await picture_batcher.start()
    undo_drain = nothing_to_undo
    try:
        service = ModelService(model, batcher, settings, picture_batcher)
        await service.warmup()
        app.state.service = service
        app.state.ready = True
        # SIGTERM from now on drains first (serving/drain.py); before, there is nothing to drain.
        undo_drain = install_drain(app.state.drain, settings.drain_s, loop)
        logger.info(
            "ready: %s (model_version=%s, sha256 %s) on %s",
            settings.model_path,
            service.model_version,
            "verified" if model.sha256_verified else "NOT verified",
            ", ".join(model.predictor.providers),
        )
        yield
    finally:
        undo_drain()
        app.state.ready = False
        # In-flight requests finish before the worker exits; a hung model call is given up
        # after the inference deadline (its requests have had their 504 by then).
        await batcher.stop(timeout_s=settings.inference_timeout_s)
        if picture_batcher is not None:
            await picture_batcher.stop(timeout_s=settings.inference_timeout_s)
        app.state.service = None


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the service; ``settings=None`` reads ``PRODUCT_CLASSIFIER_*`` env vars."""
    settings = settings if settings is not None else load_settings()
    app = FastAPI(
        title="product-classifier",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # /docs is served by serving/ui.py with local (offline) assets
        redoc_url=None,
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.service = None
    app.state.drain = Drain()  # active from SIGTERM on: /ready 503, Connection: close
    install_error_handlers(app)
    # Innermost, so everything below still wraps the lean predict path.
    app.state.fast_path = FastPathStats()
    app.add_middleware(FastPredictMiddleware, stats=app.state.fast_path)
    # Just outside it: a request over the cap is refused before its body is read.
    app.add_middleware(
        InFlightLimitMiddleware,
        max_in_flight=settings.max_in_flight,
        retry_after_s=settings.retry_after_s,
    )
    # Body-read deadline and optional API keys: inside CORS, so 401s carry CORS headers.
    install_security(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    # Added last, so outermost: every response (CORS, 404, 500) gets a request id.
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        path_limits={BATCH_PATH: settings.max_batch_upload_bytes + MULTIPART_OVERHEAD_BYTES},
        drain=app.state.drain,
        discard_bytes=settings.discard_oversize_bytes,
        discard_timeout_s=settings.body_timeout_s,
    )
    app.include_router(build_router(settings))
    app.include_router(build_ui_router())
    # Keep last: outermost middleware (logs and counts every response), /metrics, lifecycle.
    install_observability(app, settings)
    return app

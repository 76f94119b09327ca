"""HTTP endpoints. Handlers stay thin: the work lives in :class:`ModelService`.

Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
thread pool, which would cost a thread hop per request for a dictionary lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse

from product_classifier.serving import schemas
from product_classifier.serving.errors import ApiError, error_response
from product_classifier.serving.security import sanitize_filename
from product_classifier.serving.service import ModelService
from product_classifier.serving.settings import ServeSettings

BATCH_PATH = "/v1/predict/batch"


async def get_settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.settings
    return settings


async def get_service(request: Request) -> ModelService:
    service: ModelService | None = request.app.state.service
    if service is None or not request.app.state.ready:
        retry = str(request.app.state.settings.retry_after_s)
        raise ApiError(503, "not_ready", "the model is not loaded yet", {"Retry-After": retry})
    return service


ServiceDep = Annotated[ModelService, Depends(get_service)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


async def health() -> JSONResponse:
    """Liveness: 200 while the process runs, model or not."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 once the model is loaded, verified and warmed up, else 503."""
    if request.app.state.drain.active:  # SIGTERM: leave the load balancer (serving/drain.py)
        retry = str(request.app.state.settings.retry_after_s)
        return error_response(
            request, 503, "not_ready", "the service is shutting down", {"Retry-After": retry}
        )
    service: ModelService | None = request.app.state.service
    if service is None or not request.app.state.ready:
        retry = str(request.app.state.settings.retry_after_s)
        return error_response(
            request, 503, "not_ready", "the model is not loaded yet", {"Retry-After": retry}
        )
    problem = service.health_problem()  # the micro-batcher's worker died or the model hangs
    if problem is not None:
        retry = str(request.app.state.settings.retry_after_s)
        return error_response(request, 503, "not_ready", problem, {"Retry-After": retry})
    return JSONResponse({"status": "ready", "model_version": service.model_version})


async def categories(service: ServiceDep) -> JSONResponse:
    return JSONResponse(service.categories)


async def model_info(service: ServiceDep) -> JSONResponse:
    return JSONResponse(service.model_info())


async def predict(
    request: Request,
    file: Annotated[UploadFile, File(description="The product photo (PNG, JPEG, WebP, ...).")],
    service: ServiceDep,
) -> JSONResponse:
    """Classify one product photo."""
    result = await service.predict_bytes(await file.read())
    result["model_version"] = service.model_version
    result["request_id"] = request.state.request_id
    return JSONResponse(result)


async def predict_batch(
    request: Request,
    files: Annotated[
        list[UploadFile], File(description="Product photos, one multipart part each.")
    ],
    service: ServiceDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Classify several photos; each result is a prediction or a per-file error, in order."""
    if len(files) > settings.max_batch_files:
        raise ApiError(
            413,
            "too_many_files",
            f"{len(files)} files sent; at most {settings.max_batch_files} per request",
        )
    # The filename is only echoed back (sanitised); it never becomes a path.
    uploads = [(sanitize_filename(f.filename), await f.read()) for f in files]
    results = await service.predict_many(uploads)
    return JSONResponse(
        {
            "results": results,
            "model_version": service.model_version,
            "request_id": request.state.request_id,
        }
    )


def build_router(settings: ServeSettings) -> APIRouter:
    """Routes with per-app limits (the batch route's file count comes from the settings)."""
    router = APIRouter()
    router.add_api_route(
        "/health", health, methods=["GET"], tags=["ops"], response_model=schemas.StatusResponse
    )
    router.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        tags=["ops"],
        response_model=schemas.StatusResponse,
        responses=schemas.error_responses(503),
    )
    router.add_api_route(
        "/v1/categories",
        categories,
        methods=["GET"],
        tags=["model"],
        response_model=schemas.CategoriesResponse,
        responses=schemas.error_responses(503),
    )
    router.add_api_route(
        "/v1/model",
        model_info,
        methods=["GET"],
        tags=["model"],
        response_model=schemas.ModelInfoResponse,
        responses=schemas.error_responses(503),
    )
    router.add_api_route(
        "/v1/predict",
        predict,
        methods=["POST"],
        tags=["predict"],
        response_model=schemas.PredictionResponse,
        responses=schemas.error_responses(400, 408, 413, 415, 422, 503),
    )
    router.add_api_route(
        BATCH_PATH,
        predict_batch,
        methods=["POST"],
        tags=["predict"],
        response_model=schemas.BatchResponse,
        responses=schemas.error_responses(400, 408, 413, 422, 503),
        form_limits={"max_files": settings.max_batch_files},
    )
    return router

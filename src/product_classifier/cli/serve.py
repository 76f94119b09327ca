"""`product-classifier serve`: run the FastAPI service under uvicorn.

Settings come from ``PRODUCT_CLASSIFIER_*`` env vars; the options here override them. They are
validated, and the model is loaded and verified once, before uvicorn starts, so a mistake ends
with one readable paragraph and exit code 2 instead of a traceback from every worker.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated

import typer

APP_FACTORY = "product_classifier.serving.app:create_app"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface to bind (env PRODUCT_CLASSIFIER_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port (env PRODUCT_CLASSIFIER_PORT).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="ONNX model; model_card.json beside it (env PRODUCT_CLASSIFIER_MODEL_PATH).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Worker processes (env PRODUCT_CLASSIFIER_WORKERS)."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="critical, error, warning, info, debug (env PRODUCT_CLASSIFIER_LOG_LEVEL).",
        ),
    ] = None,
) -> None:
    """Serve the classifier over HTTP (env vars: PRODUCT_CLASSIFIER_*; see README)."""
    from product_classifier.inference.errors import ModelLoadError
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.serving.settings import SettingsError, env_name, load_settings

    overrides = {
        "host": host,
        "port": port,
        "model_path": model,
        "workers": workers,
        "log_level": log_level,
    }
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    try:
        load_verified_model(settings.model_path, settings.card_path, verify=settings.verify_sha256)
    except ModelLoadError as exc:
        hint = ""
        if "sha256" in str(exc) and settings.verify_sha256:
            hint = f" (for development only: {env_name('verify_sha256')}=false)"
        raise _fail(f"cannot serve the model: {exc}{hint}") from None

    # Worker processes rebuild the settings from the environment: hand the options down.
    for key, value in overrides.items():
        if value is not None:
            os.environ[env_name(key)] = str(value)

    import uvicorn

    from product_classifier.serving.logging_config import build_log_config
    from product_classifier.serving.observability_multiprocess import prepare_multiprocess_dir

    # Metrics add up across workers only if their directory exists before the workers start.
    prepare_multiprocess_dir(settings.workers, enabled=settings.metrics_enabled)

    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=build_log_config(settings.log_level, settings.log_format),
        access_log=settings.access_log,
        loop="uvloop" if has_uvloop else "asyncio",
        http="httptools" if has_httptools else "h11",
        # Let in-flight requests finish on SIGTERM, but don't hang a deploy forever.
        timeout_graceful_shutdown=30,
        server_header=False,  # don't advertise the server software; one header less to write
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("serve")(serve)

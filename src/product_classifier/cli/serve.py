"""`product-classifier serve`: run the FastAPI service under uvicorn.

Settings come from ``PRODUCT_CLASSIFIER_*`` env vars; the options here override them. They are
validated, and the model files are checked (present, card readable, sha256 as the card says,
an ONNX protobuf) before uvicorn starts, so a mistake ends with one readable paragraph and exit
code 2 instead of a traceback from every worker. The check builds no onnxruntime session: the
workers load the model right after, and loading it here too (importing onnxruntime, numpy and
PIL, two sessions for the cascade) made this phase 0.72 s instead of 0.46 s on 2 cores; cold
start to the first 200 on /ready: scripts/start_footprint.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from product_classifier.serving.settings import ServeSettings


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def check_model(settings: ServeSettings) -> None:
    """Everything about the model files that needs no onnxruntime; raises ModelLoadError.

    The files exist, the card reads, each file's sha256 is the card's (unless verification is
    off), the cascade's first stage and the picture expert are there, and each file is framed
    as an ONNX protobuf.
    """
    from product_classifier.inference.errors import ModelLoadError
    from product_classifier.inference.model_card import (
        FIRST_STAGE,
        PICTURE_EXPERT,
        cascade_spec,
        check_beside,
        check_model_files,
        picture_expert_spec,
    )
    from product_classifier.inference.onnx_file import onnx_framing_problem

    model_path = settings.model_path
    verify = settings.verify_sha256
    card, card_file, _ = check_model_files(model_path, settings.card_path, verify=verify)
    files = [model_path]
    spec = cascade_spec(model_path, card) if settings.model_variant == "cascade" else None
    # As load_verified_model() will check them: the cascade's first stage, and the pictures'
    # second opinion (loaded for any variant).
    if spec is not None:
        files.append(
            check_beside(model_path, spec["first"], card_file, verify=verify, what=FIRST_STAGE)[0]
        )
    expert_spec = picture_expert_spec(card)
    if expert_spec is not None:
        files.append(
            check_beside(model_path, expert_spec, card_file, verify=verify, what=PICTURE_EXPERT)[0]
        )
    for path in files:
        problem = onnx_framing_problem(path)
        if problem is not None:
            raise ModelLoadError(f"{path} is not a usable ONNX model: {problem}")


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
        check_model(settings)
    except ModelLoadError as exc:
        hint = ""
        if "sha256" in str(exc) and settings.verify_sha256:
            hint = f" (for development only: {env_name('verify_sha256')}=false)"
        raise _fail(f"cannot serve the model: {exc}{hint}") from None

    # Worker processes rebuild the settings from the environment: hand the options down, and
    # the resolved worker count, which each worker needs to size its model slots.
    for key, value in overrides.items():
        if value is not None:
            os.environ[env_name(key)] = str(value)
    os.environ[env_name("workers")] = str(settings.resolved_workers)

    # Become the server process (same PID, so signals reach uvicorn directly): a small entry
    # point that imports only what serving needs (see serving/run.py for the memory saved).
    argv = [sys.executable, "-m", "product_classifier.serving.run"]
    argv += ["--host", settings.host, "--port", str(settings.port)]
    argv += ["--workers", str(settings.resolved_workers)]
    argv += ["--log-level", settings.log_level, "--log-format", settings.log_format]
    if settings.access_log:
        argv.append("--access-log")
    if not settings.metrics_enabled:
        argv.append("--no-metrics")
    sys.stdout.flush()
    sys.stderr.flush()
    # Our own interpreter and module, no shell involved.
    os.execv(sys.executable, argv)  # nosec B606


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("serve")(serve)

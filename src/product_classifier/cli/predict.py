"""`product-classifier predict`: classify a folder (or files, or globs) of product photos.

Runs the local ONNX model (onnxruntime, no torch) or, with ``--url``, a running service. One row
per image goes to a CSV or JSON file (or CSV on stdout); a summary goes to stderr.

Exit codes: 0 every image was classified; 1 at least one image failed (it has an error row);
2 nothing could run (bad options, no images, model not loadable, service unreachable).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
MAX_LISTED_ERRORS = 20  # on stderr; the output file has them all


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(EXIT_CANNOT_RUN)


def predict(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively for .png .jpg .jpeg .webp .gif "
            ".bmp .tif .tiff) or glob patterns such as 'photos/**/*.jpg' (quote them).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="results.csv or results.json (default: CSV on stdout).",
            dir_okay=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Use a running service (e.g. http://127.0.0.1:8000) instead of the local model.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="PRODUCT_CLASSIFIER_API_KEY",
            show_envvar=True,
            help="With --url: the service's API key, sent as 'X-API-Key' (needed when the "
            "service sets PRODUCT_CLASSIFIER_API_KEYS). Prefer the environment variable: a "
            "command-line argument is visible to other users of the machine.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "-b",
            min=1,
            max=1024,
            help="Images per model call or per request (the service takes at most 64).",
        ),
    ] = 32,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="Local ONNX model, verified against model_card.json beside it when present "
            "(default: the one `product-classifier serve` loads, from PRODUCT_CLASSIFIER_* "
            "settings: the served default, the cascade in front of the released INT8 model).",
            show_default=False,
        ),
    ] = None,
    review_threshold: Annotated[
        float | None,
        typer.Option(
            "--review-threshold",
            min=0.0,
            max=1.0,
            help="Local model only: needs_review below this confidence (default: the "
            "service's: the model card's review policy, else 0.7).",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
) -> None:
    """Classify many product photos; one row per image (exit 1 if any image failed)."""
    from tqdm import tqdm

    from product_classifier.inference import bulk
    from product_classifier.serving.settings import SettingsError, load_settings

    items = bulk.collect_inputs(paths)
    if not items:
        raise _fail(f"no image files found in {', '.join(paths)}")
    writer = None
    if output is not None:
        try:
            writer = bulk.writer_for(output)
        except ValueError as exc:
            raise _fail(str(exc)) from None

    backend: bulk.Backend
    try:
        if url is not None:
            backend = bulk.RemoteBackend(url, api_key=api_key)
        else:
            # Same defaults as the service, so that local and --url runs agree.
            settings = load_settings(model_path=model, review_threshold=review_threshold)
            backend = bulk.LocalBackend(
                settings.model_path,
                review_threshold=settings.review_threshold,
                cascade=settings.model_variant == "cascade",
                cascade_threshold=settings.cascade_threshold,
            )
    except (bulk.BulkError, SettingsError) as exc:
        raise _fail(str(exc)) from None

    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=len(items), unit="img", disable=not show, file=sys.stderr) as bar:
        report = bulk.run_bulk(items, backend, batch_size=batch_size, on_progress=bar.update)
    if isinstance(backend, bulk.RemoteBackend):
        backend.close()

    if output is None:
        bulk.write_csv(report, sys.stdout)
    else:
        assert writer is not None
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as stream:
            writer(report, stream)

    s = report.summary()
    where = f" -> {output}" if output is not None else ""
    typer.echo(
        f"{s['images']} images: {s['classified']} classified, {s['needs_review']} need review, "
        f"{s['failed']} failed (model {report.model_version}){where}",
        err=True,
    )
    failed = [row for row in report.rows if not row.ok]
    for row in failed[:MAX_LISTED_ERRORS]:
        typer.secho(f"  {row.path}: {row.error_message} ({row.error_code})", err=True, fg="yellow")
    if len(failed) > MAX_LISTED_ERRORS:
        typer.echo(f"  ... and {len(failed) - MAX_LISTED_ERRORS} more (see the output)", err=True)
    raise typer.Exit(EXIT_SOME_FAILED if report.failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("predict")(predict)

"""`product-classifier evaluate`: metrics, confusion matrix and a summary for a model file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from product_classifier.cli.common import exit_on

if TYPE_CHECKING:
    from product_classifier.evaluation.metrics import ClassificationMetrics


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    model: Path = typer.Option(
        Path("artifacts/model.onnx"), "--model", "-m", help="An .onnx file or a .pt checkpoint."
    ),
    out_dir: Path = typer.Option(Path("reports/evaluation"), help="Where the report goes."),
    data_dir: Path | None = typer.Option(None, help="Fashion-MNIST folder (default: search)."),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Score every picture of this folder (one sub-folder per category of the model) "
        "instead of the model's own test split, e.g. held-out pictures from other sources.",
    ),
    photos: bool = typer.Option(
        False, "--photos", help="Score images rendered as shop photos vs the raw images."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="val or test. Default: test for the model's metrics (a release's report), val for "
        "--photos (what preprocessing is tuned on; choices are never made on test images).",
    ),
    n: int = typer.Option(2000, "--n", min=1, max=10000, help="--photos: how many photos."),
    seed: int = typer.Option(0, "--seed", help="--photos: which photos (deterministic)."),
    url: str | None = typer.Option(
        None, "--url", help="--photos: send them to this running service (default: in-process)."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="PRODUCT_CLASSIFIER_API_KEY", help="--photos --url: API key."
    ),
    save_photos: Path | None = typer.Option(
        None, "--save-photos", help="--photos: also write the photos to this folder."
    ),
) -> None:
    """Evaluate on the model's test split (Fashion-MNIST's 10k, or its catalog's held-out part):
    accuracy, per-class P/R/F1, macro-F1 and the confusion matrix."""
    if not model.exists():
        typer.secho(f"model file not found: {model}", fg="red", err=True)
        raise typer.Exit(2)
    if split not in (None, "val", "test"):
        typer.secho(f"--split must be val or test, got {split!r}", fg="red", err=True)
        raise typer.Exit(2)
    if photos:
        _evaluate_photos(model, n, seed, url, api_key, data_dir, save_photos, split or "val")
        return
    split = split or "test"
    from product_classifier.data.folder import FolderDataError
    from product_classifier.evaluation.evaluate import evaluate_model
    from product_classifier.evaluation.report import write_evaluation_report

    try:
        metrics, _, _ = evaluate_model(
            model, data_dir=data_dir, split=split, folder=data, progress=True
        )
    except (FolderDataError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    where = f"the pictures in {data}" if data is not None else f"its {split} split"
    paths = write_evaluation_report(metrics, out_dir, title=f"Evaluation of {model} on {where}")
    _print_per_class(metrics)
    typer.echo(
        f"accuracy {metrics.accuracy:.4f}  macro-F1 {metrics.macro_f1:.4f}  "
        f"min precision {metrics.min_precision:.3f}  min recall {metrics.min_recall:.3f}"
    )
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def _print_per_class(metrics: ClassificationMetrics) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics.n} pictures")
    for column in ("category", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for row in metrics.per_class:
        table.add_row(
            row.name, f"{row.precision:.3f}", f"{row.recall:.3f}", f"{row.f1:.3f}", str(row.support)
        )
    Console().print(table)


def _evaluate_photos(
    model: Path,
    n: int,
    seed: int,
    url: str | None,
    api_key: str | None,
    data_dir: Path | None,
    save_dir: Path | None,
    split: str,
) -> None:
    """Accuracy on rendered shop photos (through ``url`` or in-process) vs the raw images."""
    if model.suffix != ".onnx":
        typer.secho("--photos needs an .onnx model (the one the service runs)", fg="red", err=True)
        raise typer.Exit(2)
    from product_classifier.evaluation.photos import evaluate_photos

    with exit_on(RuntimeError, ValueError):  # the service failed a request; n > the split
        result = evaluate_photos(
            model,
            n=n,
            seed=seed,
            url=url,
            api_key=api_key,
            data_dir=data_dir,
            save_dir=save_dir,
            split="test" if split == "test" else "val",
        )
    where = f"through {url}" if url else "in-process (the service's preprocessing)"
    typer.echo(f"shop photos of the {split} split, {where}:")
    typer.echo(result.summary())

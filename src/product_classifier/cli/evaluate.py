"""`product-classifier evaluate`: metrics, confusion matrix and a summary for a model file."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    model: Path = typer.Option(
        Path("artifacts/model.onnx"), "--model", "-m", help="An .onnx file or a .pt checkpoint."
    ),
    out_dir: Path = typer.Option(Path("reports/evaluation"), help="Where the report goes."),
    data_dir: Path | None = typer.Option(None, help="Fashion-MNIST folder (default: search)."),
) -> None:
    """Evaluate on the 10k Fashion-MNIST test set: accuracy, per-class P/R/F1, macro-F1."""
    if not model.exists():
        typer.secho(f"model file not found: {model}", fg="red", err=True)
        raise typer.Exit(2)
    from product_classifier.evaluation.evaluate import evaluate_model
    from product_classifier.evaluation.report import write_evaluation_report

    metrics, _, _ = evaluate_model(model, data_dir=data_dir)
    paths = write_evaluation_report(metrics, out_dir, title=f"Evaluation of {model}")
    typer.echo(
        f"accuracy {metrics.accuracy:.4f}  macro-F1 {metrics.macro_f1:.4f}  "
        f"min precision {metrics.min_precision:.3f}  min recall {metrics.min_recall:.3f}"
    )
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")

"""`product-classifier export`: checkpoint -> ONNX + model card in artifacts/."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    checkpoint: Path = typer.Argument(..., exists=True, dir_okay=False, help="A best.pt/last.pt."),
    out_dir: Path = typer.Option(Path("artifacts"), help="Where model.onnx + model_card.json go."),
    tta_flip: bool | None = typer.Option(
        None, "--tta-flip/--no-tta-flip", help="Flip-TTA in the graph (default: from config)."
    ),
    model_version: str | None = typer.Option(None, help="Default: CONFIGNAME-YYYYMMDD."),
) -> None:
    """Export to ONNX, check it against PyTorch, evaluate it on its test split, write the card."""
    from product_classifier.export.release import release_checkpoint

    # The release's report keeps its place; any other export keeps its report beside the model.
    reports = Path("reports/release") if out_dir == Path("artifacts") else out_dir / "report"
    card = release_checkpoint(
        checkpoint, out_dir, tta_flip=tta_flip, model_version=model_version, reports_dir=reports
    )
    test = card["metrics"]["test"]
    typer.echo(
        f"{out_dir / card['file']} ({card['size_bytes'] / 1e6:.2f} MB, "
        f"sha256 {card['sha256'][:12]}): "
        f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}, "
        f"min precision {test['min_precision']:.3f}, min recall {test['min_recall']:.3f}"
    )

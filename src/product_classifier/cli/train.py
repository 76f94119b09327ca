"""`product-classifier train`: train one config (the search lives in `search`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Experiment YAML under configs/ (default: configs/catalog.yaml with --data, "
        "else configs/baseline.yaml).",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="A catalog folder: one sub-folder per category (or train/ and test/ holding "
        "them). Sets data.folder.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config value, e.g. --set train.epochs=3 (repeatable)."
    ),
    run_dir: Path | None = typer.Option(
        None, help="Where checkpoints go (default runs/NAME-TIME)."
    ),
    resume: bool = typer.Option(False, help="Continue from RUN_DIR/last.pt if it exists."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars (default: when stderr is a TTY)."
    ),
    release: bool = typer.Option(
        False, help="Export the best checkpoint to artifacts/ with a model card when done."
    ),
) -> None:
    """Train a model from a YAML config, with a progress bar, early stopping and checkpoints."""
    from product_classifier.cli.common import default_config, load_config_or_exit

    if data is not None and not data.is_dir():
        typer.secho(f"--data {data}: not a folder", fg="red", err=True)
        raise typer.Exit(2)
    if config is None:
        config = default_config("catalog" if data is not None else "baseline")
    cfg = load_config_or_exit(config, overrides)
    if data is not None:
        # Absolute: evaluate, export and quantize find the pictures from any working directory.
        cfg.data.folder = data.resolve()  # set after parsing: a path is not YAML
    from product_classifier.training.trainer import train as run_training

    if run_dir is None and resume and cfg.train.run_name is None:
        typer.secho("--resume needs --run-dir or train.run_name in the config", fg="red", err=True)
        raise typer.Exit(2)
    if progress is None:
        progress = sys.stderr.isatty()
    from product_classifier.data.folder import FolderDataError
    from product_classifier.models.transfer import PretrainedError

    try:
        result = run_training(cfg, run_dir=run_dir, resume=resume, progress=progress)
    except (FolderDataError, PretrainedError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"best val accuracy {result.best_val_accuracy:.4f} at epoch {result.best_epoch} "
        f"({result.epochs_run} epochs, {result.wall_seconds / 60:.1f} min, "
        f"{result.parameters:,} parameters)\ncheckpoint: {result.best_checkpoint}"
    )
    # Under torchrun every rank returns here; only rank 0 may write artifacts/.
    if release and int(os.environ.get("RANK", "0")) == 0:
        from product_classifier.export.release import release_checkpoint

        card = release_checkpoint(result.best_checkpoint)
        test = card["metrics"]["test"]
        typer.echo(
            f"released artifacts/model.onnx: test accuracy {test['accuracy']:.4f}, "
            f"macro-F1 {test['macro_f1']:.4f}"
        )

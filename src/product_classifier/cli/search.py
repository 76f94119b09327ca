"""`product-classifier search ...`: Optuna model search tracked in MLflow, its report, the model
registry entry of the release, and a CPU-time estimate for a recipe."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from product_classifier.cli.common import exit_on, load_config_or_exit

if TYPE_CHECKING:
    from product_classifier.training.search import SearchConfig

DEFAULT_SEARCH_CONFIG = Path("configs/search.yaml")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""
    search_app = typer.Typer(
        help="Model search (Optuna, resumable) with every trial tracked in MLflow.",
        no_args_is_help=True,
    )
    search_app.command("run")(run)
    search_app.command("report")(report)
    search_app.command("register")(register_release)
    search_app.command("time-recipe")(time_recipe)
    app.add_typer(search_app, name="search")


def _load(config: Path) -> SearchConfig:
    from product_classifier.config import ConfigError
    from product_classifier.training.search import load_search_config

    try:
        return load_search_config(config)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc


def run(
    config: Path = typer.Option(DEFAULT_SEARCH_CONFIG, "--config", "-c", help="Search YAML."),
    stage: list[str] = typer.Option(
        [], "--stage", "-s", help="Stage(s) to run, in order (repeatable; default: all)."
    ),
    storage: str | None = typer.Option(
        None, help="Optuna storage, any SQLAlchemy URL (default: the YAML's, sqlite:///runs/...)."
    ),
    tracking_uri: str | None = typer.Option(
        None, help="MLflow tracking URI (default: the YAML's, sqlite:///mlruns.db)."
    ),
    epochs: int | None = typer.Option(None, min=1, help="Epochs per trial."),
    subset: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Fraction of the training split per trial."
    ),
    trials: int | None = typer.Option(
        None, min=1, help="Finished trials the study should hold (default: whole grid / YAML)."
    ),
    timeout: float | None = typer.Option(
        None, min=0.0, help="Minutes after which no new trial starts (per stage)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Per-epoch progress bars (default: on a TTY)."
    ),
) -> None:
    """Run or resume search stages: a stage's study continues where it stopped."""
    cfg = _load(config)
    stages = stage or list(cfg.stages)
    unknown = [name for name in stages if name not in cfg.stages]
    if unknown:
        typer.secho(
            f"unknown stage(s) {unknown}; stages: {', '.join(cfg.stages)}", fg="red", err=True
        )
        raise typer.Exit(2)
    from product_classifier.training.search import run_stage

    for name in stages:
        # RuntimeError: e.g. inheriting from a stage that has no result yet.
        with exit_on(RuntimeError):
            outcome = run_stage(
                cfg,
                name,
                storage=storage,
                tracking_uri=tracking_uri,
                epochs=epochs,
                subset_fraction=subset,
                trials=trials,
                timeout_minutes=timeout,
                progress=sys.stderr.isatty() if progress is None else progress,
                log=typer.echo,
            )
        typer.echo(
            f"{outcome.study_name}: {outcome.trials_run_now} new trials; "
            f"{outcome.complete} complete, {outcome.pruned} pruned, {outcome.failed} failed; "
            f"best {outcome.best_value} {outcome.best_params}"
        )


def report(
    config: Path = typer.Option(DEFAULT_SEARCH_CONFIG, "--config", "-c", help="Search YAML."),
    storage: str | None = typer.Option(None, help="Optuna storage (default: the YAML's)."),
    out: Path = typer.Option(Path("docs/experiments.md"), help="Markdown file to (re)generate."),
    img_dir: Path = typer.Option(Path("docs/img"), help="Where the PNG plots go."),
) -> None:
    """Regenerate the tables and plots of docs/experiments.md from the studies.

    Only the part between the GENERATED markers is rewritten; hand-written sections stay.
    """
    cfg = _load(config)
    from product_classifier.training.search_report import write_report

    written = write_report(cfg, out=out, img_dir=img_dir, storage=storage)
    for path in written:
        typer.echo(f"wrote {path}")


def register_release(
    model: Path = typer.Option(Path("artifacts/model.onnx"), help="Released ONNX file."),
    card: Path | None = typer.Option(None, help="Its model card (default: next to it)."),
    tracking_uri: str = typer.Option(
        "sqlite:///mlruns.db", help="MLflow store with a model registry (database-backed)."
    ),
    name: str = typer.Option("product-classifier", help="Registered model name."),
) -> None:
    """Register the released model (ONNX + card) in the MLflow model registry."""
    from product_classifier.training.tracking import RELEASE_ALIAS, register_release

    with exit_on(OSError, ValueError):
        result = register_release(model, card, tracking_uri=tracking_uri, name=name)
    state = "already registered as" if result.already_registered else "registered as"
    typer.echo(
        f"{model} (sha256 {result.sha256[:12]}…) {state} {result.name} version "
        f"{result.version} (run {result.run_id}); alias @{RELEASE_ALIAS}: "
        f"models:/{result.name}@{RELEASE_ALIAS}"
    )


def time_recipe(
    config: Path = typer.Argument(..., help="Experiment YAML, e.g. configs/release.yaml."),
    steps: int = typer.Option(8, min=1, help="Training steps to time (after 2 warm-up steps)."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key.sub=value."),
) -> None:
    """Estimate a recipe's seconds per epoch and total time here from a few real steps."""
    from product_classifier.training.timing import time_recipe as measure

    cfg = load_config_or_exit(config, overrides)
    t = measure(cfg, steps=steps)
    typer.echo(
        f"{cfg.name}: {t.seconds_per_step:.2f} s/step wall ({t.cpu_seconds_per_step:.2f} CPU-s) "
        f"over {t.steps_timed} steps of batch {cfg.train.batch_size}, {t.threads} threads, load "
        f"{t.load_average[0]:.1f}; epoch = {t.steps_per_epoch} steps + validation of "
        f"{t.val_images} images ({t.val_seconds:.0f} s) = {t.seconds_per_epoch / 60:.1f} min; "
        f"{cfg.train.epochs} epochs ≈ {t.total_hours(cfg.train.epochs):.1f} h (extrapolated)"
    )

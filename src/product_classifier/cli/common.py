"""Helpers shared by command modules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from product_classifier.config import ExperimentConfig


def load_config_or_exit(path: Path, overrides: list[str]) -> ExperimentConfig:
    """Load an experiment config; a bad one ends the command with its message and exit code 2."""
    from product_classifier.config import ConfigError, load_experiment_config

    try:
        return load_experiment_config(path, overrides)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc


def default_config(name: str) -> Path:
    """``configs/NAME.yaml`` of the working directory, else of the source tree this package
    runs from (so ``train --data DIR`` works from any folder of a checkout or editable
    install). A missing file is reported by the config loader, with the path it tried."""
    local = Path("configs") / f"{name}.yaml"
    if local.is_file():
        return local
    checkout = Path(__file__).resolve().parents[3] / "configs" / f"{name}.yaml"
    return checkout if checkout.is_file() else local

"""Helpers shared by command modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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


# Options of the commands that add a file to a release (cascade, picture-expert).
WriteOption = Annotated[
    bool, typer.Option("--write/--dry-run", help="Write the model and the card entry.")
]
DataDirOption = Annotated[Path | None, typer.Option(help="Fashion-MNIST folder (default: search).")]


def require_files(*paths: Path) -> None:
    """End the command with exit code 2 and the path when an input file is missing."""
    for path in paths:
        if not path.is_file():
            typer.secho(f"error: file not found: {path}", fg="red", err=True)
            raise typer.Exit(2)


@contextmanager
def exit_on(*errors: type[Exception]) -> Iterator[None]:
    """End the command with exit code 1 and the message when one of ``errors`` is raised.

    For the failures a user can fix (a wrong path, a choice the data cannot meet): the message
    says why, and a traceback would only bury it. Anything else still raises.
    """
    try:
        yield
    except errors as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None

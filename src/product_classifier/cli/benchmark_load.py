"""`product-classifier` commands: benchmark_load (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""

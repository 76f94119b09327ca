"""`product-classifier benchmark ...`: inference (runtimes side by side) and load (the HTTP API)."""

from __future__ import annotations

import typer

from product_classifier.cli import benchmark_inference, benchmark_load


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Benchmarks that write a JSON report and a Markdown table under docs/.",
        no_args_is_help=True,
    )
    benchmark_inference.register(group)
    benchmark_load.register(group)
    app.add_typer(group, name="benchmark")

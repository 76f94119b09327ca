"""``python -m benchmarks inference|load`` from the repository root (``make benchmark``,
``make loadtest``): the harness is not part of the installed package."""

from __future__ import annotations

import typer

from benchmarks import inference_cli
from benchmarks.load import cli as load_cli

app = typer.Typer(
    name="benchmarks",
    help="Benchmarks that write a JSON report and a Markdown report under docs/.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
inference_cli.register(app)
load_cli.register(app)

if __name__ == "__main__":
    app()

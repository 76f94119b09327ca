"""Entry point of ``product-classifier``.

Every command module imports its heavy dependencies (torch, onnxruntime, fastapi) inside the
command function, so ``product-classifier serve`` never imports torch and ``--help`` is instant.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="product-classifier",
    help="Sort product photos into catalog categories: data, training, evaluation, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Order is the order of `--help`, which follows the pipeline.
_COMMAND_MODULES = (
    "data",
    "train",
    "search",
    "evaluate",
    "export",
    "quantize",
    "cascade",
    "picture_expert",
    "review",
    "serve",
    "predict",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(f"product_classifier.cli.{_name}").register(app)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from product_classifier import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

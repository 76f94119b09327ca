"""`product-classifier data import-folder`: your own photos, one folder per category -> IDX.

Registered on the ``data`` group by cli/data.py. See docs/retrain-your-catalog.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def import_folder(
    directory: Annotated[
        Path,
        typer.Argument(
            help="A folder with one sub-folder per category (e.g. Sneaker/, Bag/, ankle-boot/).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Where the IDX files and manifest go.")
    ] = Path("data/catalog"),
    prefix: Annotated[str, typer.Option(help="File name prefix of the outputs.")] = "catalog",
) -> None:
    """Preprocess photos exactly like the service does and write Fashion-MNIST-style IDX files."""
    from product_classifier.data.folder_import import FolderImportError, import_folder, write_import

    try:
        result = import_folder(directory)
    except FolderImportError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if len(result.sources) == 0:
        typer.secho(f"error: no readable image under {directory}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    paths = write_import(result, out_dir, prefix)
    per_category = ", ".join(f"{name} {n}" for name, n in result.counts().items())
    typer.echo(f"imported {len(result.sources)} images ({per_category})")
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
    if result.skipped:
        typer.secho(
            f"skipped {len(result.skipped)} files (listed in {paths['manifest'].name})",
            err=True,
            fg=typer.colors.YELLOW,
        )


def register(app: typer.Typer) -> None:
    """Attach ``import-folder`` to the given (``data``) group."""
    app.command("import-folder")(import_folder)

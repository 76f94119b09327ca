"""`product-classifier data`: find, import or download Fashion-MNIST and show what it holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

data_app = typer.Typer(
    help="Find, verify, import or download Fashion-MNIST; check a catalog folder.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    from product_classifier.cli import import_folder
    from product_classifier.cli.check_folder import check_folder

    import_folder.register(data_app)
    data_app.command("check")(check_folder)
    app.add_typer(data_app, name="data")


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Directory with the four Fashion-MNIST files; also where imports and downloads go "
        "(default: $PRODUCT_CLASSIFIER_DATA_DIR, else ./data/fashion-mnist).",
    ),
]
NoDownloadOption = Annotated[
    bool,
    typer.Option("--no-download", help="Never use the network; fail if the data is not local."),
]


def _fetch_or_exit(
    data_dir: Path | None, archive: Path | None, download: bool, progress: bool
) -> Path:
    from product_classifier.data.errors import DatasetError
    from product_classifier.data.fashion_mnist import fetch_dataset

    try:
        return fetch_dataset(data_dir, archive=archive, download=download, progress=progress)
    except DatasetError as exc:
        # markup=False: messages hold paths and URLs, not rich markup.
        _console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from exc


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


@data_app.command("fetch")
def fetch(
    data_dir: DataDirOption = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive", help="Import from a .zip/.tar/.tar.gz/.tgz holding the four files."
        ),
    ] = None,
    no_download: NoDownloadOption = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Download progress bars (default: on a TTY)."
        ),
    ] = None,
) -> None:
    """Make sure a verified copy of Fashion-MNIST exists and print where it is."""
    show = sys.stderr.isatty() if progress is None else progress
    directory = _fetch_or_exit(data_dir, archive, not no_download, show)
    _console().print(f"[green]Fashion-MNIST verified[/green] in {directory}", highlight=False)


@data_app.command("info")
def info(data_dir: DataDirOption = None, no_download: NoDownloadOption = False) -> None:
    """Where the data is, how many images each class has per split, and the file checksums."""
    import numpy as np
    from rich.table import Table

    from product_classifier.constants import CLASS_NAMES
    from product_classifier.data.fashion_mnist import dataset_checksums, load_labels

    directory = _fetch_or_exit(data_dir, None, not no_download, sys.stderr.isatty())
    counts = {
        split: np.bincount(load_labels(split, directory), minlength=len(CLASS_NAMES)).tolist()
        for split in ("train", "test")
    }
    table = Table(title=f"Fashion-MNIST in {directory}")
    table.add_column("id", justify="right")
    table.add_column("class")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for class_id, name in enumerate(CLASS_NAMES):
        table.add_row(
            str(class_id), name, str(counts["train"][class_id]), str(counts["test"][class_id])
        )
    table.add_section()
    table.add_row("", "total", str(sum(counts["train"])), str(sum(counts["test"])))

    sums = Table(title="SHA-256 of the decompressed IDX files (verified against pinned values)")
    sums.add_column("file")
    sums.add_column("sha256", overflow="fold")
    for name, sha in dataset_checksums(directory).items():
        sums.add_row(name, sha)
    console = _console()
    console.print(table)
    console.print(sums)

"""`product-classifier picture-expert`: ship a picture expert, the pictures' second opinion.

Exports and quantises the checkpoint next to the released model and records it in the model
card (``picture_expert``); run ``product-classifier review`` after it, which chooses on the
real-picture dev part how much the expert's doubt counts. See export/picture_expert.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from product_classifier.cli.common import DataDirOption, WriteOption, exit_on, require_files


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""
    app.command("picture-expert")(picture_expert)


def picture_expert(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CHECKPOINT", help="The expert's best.pt (configs/robust-icons-small.yaml)."
        ),
    ],
    model: Annotated[
        Path, typer.Option("--model", help="The released INT8 model it sits beside.")
    ] = Path("artifacts/model.int8.onnx"),
    write: WriteOption = True,
    data_dir: DataDirOption = None,
) -> None:
    """Add a picture expert beside the release (then run `product-classifier review`)."""
    require_files(checkpoint, model)
    from product_classifier.export.picture_expert import PictureExpertError, build_picture_expert

    with exit_on(PictureExpertError):
        entry = build_picture_expert(checkpoint, model=model, data_dir=data_dir, write=write)
    typer.echo(
        f"{entry['model_version']}: {entry['parameters']:,} parameters, validation accuracy "
        f"{entry['validation_accuracy']:.4f}"
    )
    if write:
        typer.echo(
            f"wrote {model.with_name(entry['file'])} and the card's 'picture_expert'; now run "
            "`product-classifier review` to choose its threshold on the dev pictures"
        )

"""`product-classifier cascade`: put a distilled student in front of the released INT8 model.

Exports and quantises the student, chooses the confidence threshold on validation images,
checks the cascade on the 10k test set (the release bars, and at most 0.1 pp below the released
model) and records it in the model card, where ``product-classifier serve`` picks it up
(``PRODUCT_CLASSIFIER_MODEL_VARIANT=cascade``, the default). See export/cascade.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from product_classifier.cli.common import DataDirOption, WriteOption, exit_on, require_files


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""
    app.command("cascade")(cascade)


def cascade(
    checkpoint: Annotated[
        Path,
        typer.Argument(metavar="CHECKPOINT", help="The student's best.pt (configs/student.yaml)."),
    ],
    second: Annotated[
        Path, typer.Option("--second", help="The released INT8 model it escalates to.")
    ] = Path("artifacts/model.int8.onnx"),
    write: WriteOption = True,
    data_dir: DataDirOption = None,
) -> None:
    """Build the serving cascade (student first, released model for the unsure images)."""
    require_files(checkpoint, second)
    from product_classifier.export.cascade import CascadeError, build_cascade

    with exit_on(CascadeError):
        entry = build_cascade(checkpoint, second=second, data_dir=data_dir, write=write)
    typer.echo(f"{'threshold':>9} {'escalated':>9} {'accuracy':>9} {'min P':>7} {'min R':>7}")
    for row in entry["validation"]["grid"]:
        mark = " <" if row["threshold"] == entry["threshold"] else ""
        typer.echo(
            f"{row['threshold']:9.3f} {row['escalated']:9.1%} {row['accuracy']:9.4f} "
            f"{row['min_precision']:7.3f} {row['min_recall']:7.3f}{mark}"
        )
    test = entry["metrics"]["test"]
    typer.echo(
        f"test: accuracy {test['accuracy']:.4f} (released model alone "
        f"{entry['second_stage_test']['accuracy']:.4f}), macro-F1 {test['macro_f1']:.4f}, "
        f"min P {test['min_precision']:.3f}, min R {test['min_recall']:.3f}, escalated "
        f"{entry['escalated_fraction']['test']:.1%}"
    )
    if write:
        typer.echo(f"wrote {second.with_name(entry['first']['file'])} and the card's 'cascade'")

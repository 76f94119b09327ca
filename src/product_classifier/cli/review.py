"""`product-classifier review`: choose when ``needs_review`` is set, and record it in the card.

The temperature comes from the Fashion-MNIST validation split, the review threshold from the
share of clean validation images it may flag, the out-of-scope band from a dev folder of real
pictures (its categories' sub-folders plus ``out-of-scope``). Real pictures get their own
temperature and thresholds, from the dev folder alone. Never a test set. See
export/review.py and inference/review.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from product_classifier.cli.common import DataDirOption, exit_on


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""
    app.command("review")(review)


def review(
    dev: Annotated[
        Path,
        typer.Option(
            "--dev",
            help="Dev pictures: one sub-folder per category plus out-of-scope/ (e.g. the "
            "real-picture benchmark's dev part, make real-pictures).",
        ),
    ],
    model: Annotated[
        Path, typer.Option("--model", "-m", help="The served model (its card gets the policy).")
    ] = Path("artifacts/model.int8.onnx"),
    cascade: Annotated[
        bool, typer.Option("--cascade/--no-cascade", help="Score it as served: the cascade.")
    ] = True,
    max_clean_flag_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Most validation images the flag may catch."),
    ] = 0.065,
    write: Annotated[
        bool, typer.Option("--write/--dry-run", help="Write the card's review section.")
    ] = True,
    data_dir: DataDirOption = None,
) -> None:
    """Choose the review policy (temperature, review and out-of-scope thresholds)."""
    from product_classifier.export.review import ReviewChoiceError, choose_review
    from product_classifier.inference.errors import ModelLoadError

    with exit_on(ReviewChoiceError, ModelLoadError):
        entry = choose_review(
            model,
            dev,
            cascade=cascade,
            data_dir=data_dir,
            max_clean_flag_rate=max_clean_flag_rate,
            write=write,
        )
    typer.echo(
        f"temperature {entry['temperature']}, review below {entry['threshold']}, "
        f"out of scope below {entry['out_of_scope_threshold']}"
    )
    pictures = entry.get("pictures")
    if pictures:
        typer.echo(
            f"real pictures: temperature {pictures['temperature']}, review below "
            f"{pictures['threshold']}, out of scope below {pictures['out_of_scope_threshold']}"
            + (
                f" or the picture expert below {pictures['second_opinion']}"
                if pictures.get("second_opinion")
                else ""
            )
        )
    for part in ("validation", "dev"):
        m = entry[part]
        wrong = "n/a" if m["review_on_wrong"] is None else f"{m['review_on_wrong']:.1%}"
        oos = (
            ""
            if m["out_of_scope_flagged"] is None
            else f", out-of-scope flagged {m['out_of_scope_flagged']:.1%}"
        )
        typer.echo(
            f"{part}: accuracy {m['accuracy']:.1%}, flagged {m['review_rate']:.1%} "
            f"(wrong {wrong}){oos}"
        )
    if write:
        typer.echo(f"wrote the card's 'review' section beside {model}")

"""`product-classifier quantize`: FP32 ONNX -> static INT8 (QDQ), gated on the test split.

Calibration uses the model's own training images only (Fashion-MNIST's, or its catalog's).
The INT8 file replaces ``--out`` only when it passes the release gate (Fashion-MNIST: at most
0.3 pp accuracy lost vs FP32, every class precision and recall >= 0.85; a catalog: at most one
test picture or 0.3 pp lost);
then it is recorded under ``variants.int8`` in the model card (the FP32 entries stay untouched).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from product_classifier.export.quantize import QuantizationSettings


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""
    app.command("quantize")(quantize)


def quantize(
    model: Annotated[Path, typer.Option("--model", "-m", help="The FP32 ONNX model.")] = Path(
        "artifacts/model.onnx"
    ),
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the INT8 model goes.")] = Path(
        "artifacts/model.int8.onnx"
    ),
    calibration_size: Annotated[
        int, typer.Option("--calibration-size", min=1, help="Training images used to calibrate.")
    ] = 1000,
    method: Annotated[
        str, typer.Option("--method", help="Calibration: minmax, entropy or percentile.")
    ] = "percentile",
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            help="Keep a node in FP32 (repeatable): first-conv, last-gemm or a node name.",
        ),
    ] = None,
    percentile: Annotated[float, typer.Option(help="Percentile for --method percentile.")] = 99.999,
    seed: Annotated[int, typer.Option(help="Seed of the calibration sample.")] = 0,
    per_channel: Annotated[
        bool,
        typer.Option(
            "--per-channel/--per-tensor",
            help="Weight scales per output channel (default) or one per tensor.",
        ),
    ] = True,
    card: Annotated[
        Path | None,
        typer.Option(help="Model card to record the variant in (default: beside --model)."),
    ] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Record the variant in the card.")
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Write --out even if the quality gate fails.")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Fashion-MNIST folder (default: search).")
    ] = None,
) -> None:
    """Quantise to INT8 (calibrated on training images) and evaluate it against FP32."""
    if not model.is_file():
        typer.secho(f"error: model file not found: {model}", fg="red", err=True)
        raise typer.Exit(2)
    from product_classifier.export.quantize import CALIBRATION_METHODS, QuantizationSettings

    if method not in CALIBRATION_METHODS:
        typer.secho(f"error: --method must be one of {', '.join(CALIBRATION_METHODS)}", err=True)
        raise typer.Exit(2)
    try:
        settings = QuantizationSettings(
            method=method,  # type: ignore[arg-type]  # checked above
            calibration_size=calibration_size,
            seed=seed,
            per_channel=per_channel,
            exclude=tuple(exclude or ()),
            percentile=percentile,
        )
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    _run(model, out, settings, card or model.with_name("model_card.json"), record, force, data_dir)


def _run(
    model: Path,
    out: Path,
    settings: QuantizationSettings,
    card: Path,
    record: bool,
    force: bool,
    data_dir: Path | None,
) -> None:
    from product_classifier.evaluation.evaluate import load_split, model_data, onnx_logits
    from product_classifier.evaluation.metrics import compute_metrics
    from product_classifier.export.quantize import (
        VARIANT_NAME,
        check_quality,
        quantize_model,
        record_variant,
        top1_agreement,
        variant_entry,
    )

    # Quantise next to the target and move it in only once it passed the gate.
    candidate = out.with_name(out.name + ".candidate")
    try:
        result = quantize_model(model, candidate, settings, data_dir=data_dir)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    info = model_data(model, data_dir)
    images, labels = load_split(info, "test")
    fp32_logits = onnx_logits(model, images, spec=info.spec)
    int8_logits = onnx_logits(candidate, images, spec=info.spec)
    fp32 = compute_metrics(labels, fp32_logits.argmax(axis=1), info.class_names)
    int8 = compute_metrics(labels, int8_logits.argmax(axis=1), info.class_names)
    agreement = top1_agreement(int8_logits, fp32_logits)
    if info.data.folder is None:
        problems = check_quality(int8, fp32)
    else:
        # A catalog's test split is small: one picture can be several pp, and the spec's
        # per-class bar is Fashion-MNIST's. The gate: INT8 loses at most one test picture
        # (or 0.3 pp) against FP32.
        one_picture_pp = 100.0 / max(1, len(labels))
        problems = check_quality(int8, fp32, max_drop_pp=max(0.3, one_picture_pp), bar=0.0)

    typer.echo(f"{'':8} {'accuracy':>9} {'macro-F1':>9} {'min P':>7} {'min R':>7}")
    for name, m in (("FP32", fp32), ("INT8", int8)):
        typer.echo(
            f"{name:8} {m.accuracy:9.4f} {m.macro_f1:9.4f} {m.min_precision:7.3f} "
            f"{m.min_recall:7.3f}"
        )
    typer.echo(
        f"top-1 agreement {agreement:.4f}; excluded nodes: "
        f"{', '.join(result.excluded_nodes) or 'none'}; size {model.stat().st_size:,} -> "
        f"{candidate.stat().st_size:,} bytes"
    )
    if problems and not force:
        candidate.unlink()
        for problem in problems:
            typer.secho(f"gate failed: {problem}", fg="red", err=True)
        typer.secho(f"{out} was not written", fg="red", err=True)
        raise typer.Exit(1)
    os.replace(candidate, out)
    final = dataclasses.replace(result, path=out)
    entry = variant_entry(final, metrics=int8, reference=fp32, agreement=agreement)
    typer.echo(f"wrote {out} (sha256 {entry['sha256'][:12]})")
    if problems:
        typer.secho("gate failed but --force: not recording it in the card", fg="yellow")
        return
    if record:
        if not card.is_file():
            typer.secho(f"no model card at {card}; variant not recorded", fg="yellow", err=True)
            return
        record_variant(card, VARIANT_NAME, entry)
        typer.echo(f"recorded variants.{VARIANT_NAME} in {card}")
    else:
        typer.echo(json.dumps({VARIANT_NAME: entry}, indent=2)[:2000])

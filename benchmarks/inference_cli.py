"""`python -m benchmarks inference` (make benchmark): PyTorch eager vs ONNX FP32 vs INT8 on CPU.

Writes the JSON report and the generated sections of docs/benchmarks.md (between their
markers; the rest of the file is kept). ``--session-sweep`` measures onnxruntime session
settings instead (its own section and JSON). ``--smoke`` runs a few iterations of everything in
seconds and, unless told otherwise, writes under reports/benchmarks/ so it never overwrites
real figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DOCS = Path("docs/benchmarks.md")
SMOKE_DOCS = Path("reports/benchmarks/inference-smoke.md")
JSON_NAME = {False: "inference", True: "inference-session-sweep"}


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{what}: expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{what}: expected positive integers, got {text!r}")
    return values


def inference(
    smoke: Annotated[
        bool, typer.Option("--smoke", help="A few iterations only (seconds; for tests).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Markdown report (default: docs/benchmarks.md)."),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="JSON report (default: reports/benchmarks/inference.json)."),
    ] = None,
    fp32: Annotated[Path, typer.Option(help="FP32 ONNX model.")] = Path("artifacts/model.onnx"),
    int8: Annotated[Path, typer.Option(help="INT8 ONNX model.")] = Path(
        "artifacts/model.int8.onnx"
    ),
    checkpoint: Annotated[
        Path, typer.Option(help="PyTorch checkpoint (skipped with a note when absent).")
    ] = Path("runs/release/best.pt"),
    gpu_json: Annotated[
        Path, typer.Option(help="GPU results to include (skipped when absent).")
    ] = Path("docs/evidence/gpu-2026-11-26/gpu_torch_benchmark.json"),
    threads: Annotated[str, typer.Option(help="Thread counts, comma-separated.")] = "1,2",
    batch_sizes: Annotated[str, typer.Option(help="Throughput batch sizes.")] = "1,32,256",
    repeats: Annotated[int, typer.Option(min=1, help="Interleaved rounds (median).")] = 3,
    session_sweep: Annotated[
        bool,
        typer.Option(
            "--session-sweep",
            help="Measure onnxruntime session settings (threads, spinning, execution mode, "
            "offline optimisation) on the ONNX files instead of comparing runtimes.",
        ),
    ] = False,
) -> None:
    """Size, load time, peak RSS, batch-1 latency and throughput of each runtime."""
    from benchmarks.inference import (
        BenchmarkConfig,
        WorkerError,
        run_benchmark,
        run_session_sweep,
        write_reports,
    )

    if smoke:
        config = BenchmarkConfig.smoke_config()
        suffix = "-smoke"
    else:
        config = BenchmarkConfig(
            threads=_ints(threads, "--threads"),
            batch_sizes=_ints(batch_sizes, "--batch-sizes"),
            repeats=repeats,
        )
        suffix = ""
    out = out or (SMOKE_DOCS if smoke else DOCS)
    json_path = json_path or Path(f"reports/benchmarks/{JSON_NAME[session_sweep]}{suffix}.json")
    if not fp32.is_file():
        typer.secho(f"error: FP32 model not found: {fp32}", fg="red", err=True)
        raise typer.Exit(2)

    def progress(message: str) -> None:
        typer.echo(message, err=True)

    try:
        if session_sweep:
            report = run_session_sweep(config, fp32=fp32, int8=int8, progress=progress)
        else:
            report = run_benchmark(
                config,
                fp32=fp32,
                int8=int8,
                checkpoint=checkpoint,
                gpu_json=gpu_json,
                progress=progress,
            )
    except WorkerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    write_reports(report, out, json_path)
    if session_sweep:
        for row in report["rows"]:
            lat = row["cell"]["latency_batch1"]
            typer.echo(f"{row['model']} {row['setting']}: batch-1 p50 {lat['p50_ms']:.2f} ms")
        typer.echo(f"wrote {out} and {json_path}")
        return
    for rt in report["runtimes"]:
        if rt.get("skipped"):
            typer.echo(f"{rt['label']}: skipped ({rt['skipped']})")
            continue
        for t, cell in rt["cells"].items():
            lat = cell["latency_batch1"]
            typer.echo(
                f"{rt['label']:22} {t} thread(s): batch-1 p50 {lat['p50_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, load {cell['load_s'] * 1e3:.0f} ms, "
                f"peak RSS {cell['peak_rss_mib']:.0f} MiB"
            )
    for line in report["targets"]:
        typer.echo(line)
    typer.echo(f"wrote {out} and {json_path}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the given app."""
    app.command("inference")(inference)

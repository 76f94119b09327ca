"""`product-classifier benchmark load`: the HTTP API under load, against a naive baseline.

Starts the real service (``product-classifier serve`` on 127.0.0.1), a naive FastAPI + PyTorch
server and the service on a trivial model, drives them with Locust (and ``hey`` when installed),
samples their CPU and memory, and writes ``reports/performance/*.json`` and
``docs/performance.md`` (+ ``docs/img/soak-rss.png``). ``--smoke`` runs every step for a
second or so and writes under ``reports/performance/smoke/`` instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer


def load(
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Seconds-long run of every step (for tests).")
    ] = False,
    model: Annotated[Path | None, typer.Option(help="ONNX model to serve.")] = None,
    baseline_checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint for the naive PyTorch baseline.")
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Measure the naive baseline.")
    ] = True,
    http_only: Annotated[
        bool,
        typer.Option("--http-only/--no-http-only", help="Also measure a trivial model."),
    ] = True,
    sweep: Annotated[
        bool | None,
        typer.Option("--sweep/--no-sweep", help="Try worker/thread/batch settings first."),
    ] = None,
    sweep_s: Annotated[float | None, typer.Option(help="Each sweep scenario's duration.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Where the JSON goes.")] = None,
    docs: Annotated[Path | None, typer.Option(help="The Markdown report.")] = None,
    img_dir: Annotated[Path | None, typer.Option(help="Where the soak plot goes.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Service workers (default: the tuned settings).")
    ] = None,
    intra_op_threads: Annotated[int | None, typer.Option(help="onnxruntime threads.")] = None,
    model_concurrency: Annotated[
        int | None, typer.Option(help="Model calls at once per worker.")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Micro-batch cap.")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="Micro-batch wait.")] = None,
    steady_rps: Annotated[float | None, typer.Option(help="Constant-rate scenario req/s.")] = None,
    steady_s: Annotated[float | None, typer.Option(help="Constant-rate duration.")] = None,
    ramp_step_s: Annotated[float | None, typer.Option(help="Each ramp step's duration.")] = None,
    saturation_s: Annotated[float | None, typer.Option(help="JPEG/batch/mix duration.")] = None,
    hey_s: Annotated[float | None, typer.Option(help="hey duration.")] = None,
    hey_connections: Annotated[int | None, typer.Option(help="hey connections.")] = None,
    soak_s: Annotated[float | None, typer.Option(help="Soak duration.")] = None,
    baseline_soak_s: Annotated[
        float | None, typer.Option(help="Baseline soak duration (default: --soak-s).")
    ] = None,
    cold_start_runs: Annotated[int | None, typer.Option(help="Cold starts to time.")] = None,
) -> None:
    """Load-test the API (Locust + hey) against a naive baseline; write the report."""
    from product_classifier.benchmarks.load.report import write_outputs
    from product_classifier.benchmarks.load.runner import LoadOptions, Runner

    opts = LoadOptions.smoke_preset() if smoke else LoadOptions()
    overrides: dict[str, Any] = {
        "model": model,
        "baseline_checkpoint": baseline_checkpoint,
        "sweep": sweep,
        "sweep_s": sweep_s,
        "out_dir": out_dir,
        "docs": docs,
        "img_dir": img_dir,
        "steady_rps": steady_rps,
        "steady_s": steady_s,
        "ramp_step_s": ramp_step_s,
        "saturation_s": saturation_s,
        "hey_s": hey_s,
        "hey_connections": hey_connections,
        "soak_s": soak_s,
        "baseline_soak_s": baseline_soak_s,
        "cold_start_runs": cold_start_runs,
    }
    opts = replace(opts, **{k: v for k, v in overrides.items() if v is not None})
    tuned: dict[str, Any] = {
        "workers": workers,
        "intra_op_threads": intra_op_threads,
        "model_concurrency": model_concurrency,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
    }
    opts = replace(
        opts,
        http_only=http_only,
        baseline_checkpoint=opts.baseline_checkpoint if baseline else None,
        settings=replace(opts.settings, **{k: v for k, v in tuned.items() if v is not None}),
    )
    if not opts.model.is_file():
        typer.secho(f"error: model not found: {opts.model}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    results = Runner(opts, log=typer.echo).run()
    written = write_outputs(results, opts.out_dir, opts.docs, opts.img_dir)
    for kind, path in written.items():
        typer.echo(f"wrote {kind}: {path}")


def register(app: typer.Typer) -> None:
    """Attach ``load`` to the ``benchmark`` group."""
    app.command("load")(load)

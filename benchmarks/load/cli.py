"""`python -m benchmarks load` (make loadtest): the HTTP API under load, next to its peers.

Starts the real service (``product-classifier serve`` on 127.0.0.1) with its default model and
with the INT8 model alone, its peers serving the same INT8 model (naive FastAPI + ONNX Runtime
with 1 worker and one per core, BentoML, LitServe: ``make peers`` installs the last two),
PyTorch eager as an extra row and the service on a trivial model; drives them all with the
same ``hey`` runs (the service also with Locust), samples their CPU and memory, and writes
``reports/performance/*.json``, ``docs/evidence/loadtest.json`` and ``docs/performance.md``
(+ ``docs/img/soak-rss.png``). ``--smoke`` runs every step for a second or so, with the naive
1-worker peer only, and writes under ``reports/performance/smoke/`` instead.
"""

from __future__ import annotations

import json
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
        Path | None, typer.Option(help="Checkpoint for the PyTorch eager row.")
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Measure PyTorch eager too.")
    ] = True,
    peers: Annotated[
        str | None,
        typer.Option(help="Peers, comma-separated (default: all; naive-1 in --smoke)."),
    ] = None,
    peers_dir: Annotated[
        Path | None, typer.Option(help="Where `make peers` put the peers' venvs.")
    ] = None,
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
    evidence: Annotated[
        Path | None, typer.Option(help="Copy of the raw JSON committed with the report.")
    ] = None,
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
    seq_s: Annotated[float | None, typer.Option(help="One-connection hey duration.")] = None,
    soak_s: Annotated[float | None, typer.Option(help="Soak duration.")] = None,
    cold_start_runs: Annotated[int | None, typer.Option(help="Cold starts to time.")] = None,
    render: Annotated[
        Path | None,
        typer.Option(help="Measure nothing: write the report again from a run's JSON."),
    ] = None,
) -> None:
    """Load-test the API next to its peers (hey + Locust); write the report and its JSON."""
    from benchmarks.load.report import write_outputs
    from benchmarks.load.runner import LoadOptions, Runner

    opts = LoadOptions.smoke_preset() if smoke else LoadOptions()
    overrides: dict[str, Any] = {
        "model": model,
        "baseline_checkpoint": baseline_checkpoint,
        "sweep": sweep,
        "sweep_s": sweep_s,
        "out_dir": out_dir,
        "docs": docs,
        "evidence": evidence,
        "peers_dir": peers_dir,
        "peers": tuple(p.strip() for p in peers.split(",") if p.strip()) if peers else None,
        "img_dir": img_dir,
        "steady_rps": steady_rps,
        "steady_s": steady_s,
        "ramp_step_s": ramp_step_s,
        "saturation_s": saturation_s,
        "hey_s": hey_s,
        "hey_connections": hey_connections,
        "seq_s": seq_s,
        "soak_s": soak_s,
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
    if render is not None:
        results = json.loads(render.read_text())
        opts = replace(opts, out_dir=opts.out_dir / "rendered")
    elif not opts.model.is_file():
        typer.secho(f"error: model not found: {opts.model}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    if render is None:
        try:
            results = Runner(opts, log=typer.echo).run()
        except (RuntimeError, ValueError) as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
    written = write_outputs(results, opts.out_dir, opts.docs, opts.img_dir, opts.evidence)
    for kind, path in written.items():
        typer.echo(f"wrote {kind}: {path}")


def register(app: typer.Typer) -> None:
    """Attach ``load`` to the ``benchmark`` group."""
    app.command("load")(load)

"""The whole load test: servers, scenarios, resource sampling, peers, report.

For each server under test (the service with its default model and with the INT8 model alone,
its peers from ``peers.py``, PyTorch eager as an extra row and the service on a trivial model,
which isolates the HTTP cost) the runner times cold starts, keeps one instance running,
samples its process tree (``monitor``) and drives the same ``hey`` scenarios against each
(``PEER_PLAN``: one connection, 64 connections, a steady 100 req/s, 600x600 JPEGs). The
service also gets the Locust scenarios (``driver``, in a subprocess): batch endpoint, mix,
ramp and soak. Results go to JSON and Markdown (``report``). Durations are options, so the
same code runs for ten minutes or, with ``smoke=True``, for a few seconds.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import REPO_ROOT, child_env
from benchmarks.load import hey as hey_mod
from benchmarks.load.monitor import TreeMonitor
from benchmarks.load.payloads import CONTENT_TYPE, build_pool, sample_test_images
from benchmarks.load.peers import ALL_PEERS, Peer, peers
from benchmarks.server import SERVICE_ENV_PREFIX, ServerProcess, free_port, start_server

Log = Callable[[str], None]


@dataclass
class TunedSettings:
    """The service settings under test (``None``: the service's own default)."""

    workers: int | None = None
    intra_op_threads: int | None = None
    model_concurrency: int | None = None
    max_batch_size: int | None = None
    max_wait_ms: float | None = None

    def env(self) -> dict[str, str]:
        return {
            f"{SERVICE_ENV_PREFIX}{key.upper()}": str(value)
            for key, value in asdict(self).items()
            if value is not None
        }

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in asdict(self).items() if v is not None]
        return ", ".join(parts) or "defaults"


# Configurations tried by the sweep (docs/performance.md explains the pick): one process with
# two model calls at once vs one process per core, then the micro-batch cap and wait.
SWEEP: tuple[TunedSettings, ...] = (
    TunedSettings(workers=1, model_concurrency=2, max_batch_size=32),
    TunedSettings(workers=1, intra_op_threads=2, model_concurrency=1, max_batch_size=32),
    TunedSettings(workers=2, max_batch_size=16),
    TunedSettings(workers=2, max_batch_size=32),
    TunedSettings(workers=2, max_batch_size=64),
    TunedSettings(workers=2, max_batch_size=32, max_wait_ms=0.0),
    TunedSettings(workers=2, max_batch_size=32, max_wait_ms=1.0),
)

# The measured server runs the service's own defaults, i.e. exactly what `product-classifier
# serve` runs; they were chosen with the sweep above (see the "Choosing" section of
# docs/performance.md).
TUNED = TunedSettings()


def service_default_model() -> Path:
    """The model ``product-classifier serve`` would load (its settings' default)."""
    from product_classifier.serving.settings import ServeSettings

    return Path(ServeSettings().model_path)


def released_checkpoint(model: Path | None = None) -> Path:
    """The checkpoint the released model was exported from: the teacher its card names for the
    cascade's first stage (the released model itself), else ``make train-release``'s."""
    from product_classifier.inference.errors import ModelLoadError
    from product_classifier.inference.model_card import default_card_path, load_model_card

    card = default_card_path(model or service_default_model())
    try:
        teacher = load_model_card(card).get("cascade", {}).get("first", {}).get("teacher")
    except (ModelLoadError, AttributeError):  # no card, or another shape: the plain path
        teacher = None
    return Path(teacher) if teacher else Path("runs/release/best.pt")


@dataclass(frozen=True)
class HeyScenario:
    """One ``hey`` run: every server under test gets the same ones (``PEER_PLAN``)."""

    payload: str  # png, jpeg or hard (a PNG the cascade's first stage always escalates)
    connections: int  # 0: LoadOptions.hey_connections
    rate_per_connection: float  # hey -q; 0: as fast as answers come (closed loop)
    duration: str  # which LoadOptions field holds its seconds


def hey_scenarios(opts: LoadOptions) -> dict[str, HeyScenario]:
    rate_conns = opts.rate_connections
    return {
        "warmup": HeyScenario("png", 8, 0.0, "warmup_s"),
        "seq_png": HeyScenario("png", 1, 0.0, "seq_s"),
        "hey_png": HeyScenario("png", 0, 0.0, "hey_s"),
        "rate_png": HeyScenario("png", rate_conns, opts.steady_rps / rate_conns, "steady_s"),
        "hey_jpeg": HeyScenario("jpeg", 0, 0.0, "hey_s"),
        "hey_png_hard": HeyScenario("hard", 0, 0.0, "hey_s"),
    }


# What every server under test runs, in this order, on one warm instance (the warm-up's
# figures are dropped): the comparison with the peers is made of these.
PEER_PLAN: tuple[str, ...] = ("warmup", "seq_png", "hey_png", "rate_png", "hey_jpeg")


@dataclass
class LoadOptions:
    model: Path = field(default_factory=service_default_model)
    # Other model variants of the same files, measured with a short plan (serving/settings.py
    # MODEL_VARIANTS; e.g. the INT8 model alone, without the cascade's first stage).
    extra_variants: tuple[str, ...] = ("int8",)
    # PyTorch eager on the released model's checkpoint (an extra row; skipped when absent).
    baseline_checkpoint: Path | None = field(default_factory=lambda: released_checkpoint())
    # The peers (peers.py), each serving ``model`` with ONNX Runtime; all of them by default.
    peers: tuple[str, ...] = ALL_PEERS
    peers_dir: Path = Path(".venv-peers")
    out_dir: Path = Path("reports/performance")
    docs: Path | None = Path("docs/performance.md")
    # The raw JSON of the run, committed next to the doc (the dated copies stay in out_dir).
    evidence: Path | None = Path("docs/evidence/loadtest.json")
    img_dir: Path = Path("docs/img")
    settings: TunedSettings = field(default_factory=lambda: TUNED)
    steady_rps: float = 100.0
    rate_connections: int = 10
    steady_users: int = 50
    steady_s: float = 10.0
    seq_s: float = 5.0
    warmup_s: float = 1.0
    ramp_users: tuple[int, ...] = (1, 8, 64)
    ramp_step_s: float = 3.0
    saturation_s: float = 8.0
    jpeg_users: int = 32
    batch_users: int = 4
    batch_files: int = 64
    mix_users: int = 32
    hey_s: float = 8.0
    hey_connections: int = 64
    soak_s: float = 60.0
    soak_bucket_s: float = 10.0
    cold_start_runs: int = 3
    http_only: bool = True
    inference_probe_s: float = 1.0
    sweep: bool = False
    sweep_s: float = 8.0
    sample_interval_s: float = 0.5
    rate_warmup_s: float = 1.0
    smoke: bool = False

    @classmethod
    def smoke_preset(cls, **overrides: Any) -> LoadOptions:
        """Every code path, tiny durations: what ``make test`` runs."""
        base = cls(
            out_dir=Path("reports/performance/smoke"),
            docs=Path("reports/performance/smoke/performance.md"),
            evidence=None,
            img_dir=Path("reports/performance/smoke/img"),
            # The peer from the project's own venv only: the smoke run needs no `make peers`
            # (a unit test checks that the full run names every peer).
            peers=("naive-1",),
            steady_users=10,
            steady_s=1.5,
            seq_s=0.7,
            warmup_s=0.3,
            ramp_users=(1, 8),
            ramp_step_s=0.7,
            saturation_s=1.0,
            jpeg_users=4,
            batch_users=2,
            batch_files=8,
            mix_users=4,
            hey_s=1.0,
            hey_connections=8,
            soak_s=2.0,
            soak_bucket_s=1.0,
            cold_start_runs=1,
            inference_probe_s=0.3,
            extra_variants=(),
            sweep=False,
            sample_interval_s=0.2,
            rate_warmup_s=0.3,
            smoke=True,
        )
        return replace(base, **overrides)


# -- scenarios ----------------------------------------------------------------------------------


def _closed(users: int, seconds: float) -> dict[str, Any]:
    # Users start within ~users/100 s (Locust's advised spawn rate); skip that and one more
    # half second of queue build-up.
    return {"users": users, "seconds": seconds, "warmup_s": min(1.0, 0.2 + users / 100)}


def _rate(rps: float, users: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    return {"users": users, "seconds": seconds, "rate_per_user": rps / users, "warmup_s": warmup_s}


def ramp_scenario(opts: LoadOptions) -> dict[str, Any]:
    return {
        "name": "ramp_png",
        "weights": {"png": 1},
        "steps": [_closed(users, opts.ramp_step_s) for users in opts.ramp_users],
    }


def saturation_scenario(
    name: str, weights: dict[str, int], users: int, seconds: float
) -> dict[str, Any]:
    return {"name": name, "weights": weights, "steps": [_closed(users, seconds)]}


def soak_scenario(opts: LoadOptions, seconds: float) -> dict[str, Any]:
    return {
        "name": "soak_png",
        "weights": {"png": 1},
        "steps": [_rate(opts.steady_rps, opts.steady_users, seconds, opts.rate_warmup_s)],
        "bucket_s": opts.soak_bucket_s,
    }


# -- servers ------------------------------------------------------------------------------------


def _service_cmd(port: int, model: Path) -> list[str]:
    script = Path(sys.executable).with_name("product-classifier")
    base = (
        [str(script)] if script.exists() else [sys.executable, "-m", "product_classifier.cli.main"]
    )
    args = ["--host", "127.0.0.1", "--port", str(port), "--model", str(model)]
    # The service's own defaults otherwise (log level, JSON access log): what production runs.
    return [*base, "serve", *args]


def _torch_cmd(port: int, checkpoint: Path) -> list[str]:
    module = [sys.executable, "-m", "benchmarks.load.naive_server"]
    return [*module, "--checkpoint", str(checkpoint), "--port", str(port)]


Plan = list[list[dict[str, Any]] | str]


@dataclass
class Target:
    label: str  # tuned, extra, baseline, http_only, peer, sweep
    description: str
    command: Callable[[int], list[str]]
    env: dict[str, str]
    model: str = ""
    variant: str = ""
    # Plans may run "hey_png_hard" (an image the cascade always escalates) when this is set.
    hard_body: bytes | None = None
    ready_path: str = "/ready"
    cwd: Path | None = None
    peer: str = ""  # peers.py key
    version: str | None = None


class Runner:
    def __init__(self, opts: LoadOptions, log: Log = print) -> None:
        self.opts = opts
        self.log = log
        self.workdir = Path(tempfile.mkdtemp(prefix="loadtest-"))

    # -- building blocks --------------------------------------------------------------------

    def _start(self, target: Target) -> ServerProcess:
        port = free_port()
        log_path = self.workdir / f"{target.label}-{port}.log"
        return start_server(
            target.label,
            target.command(port),
            port=port,
            log_path=log_path,
            env=target.env,
            cwd=target.cwd,
            ready_path=target.ready_path,
        )

    def cold_starts(self, target: Target, runs: int) -> tuple[list[float], ServerProcess]:
        """Start ``runs`` times; all but the last are stopped. Returns (seconds, running)."""
        times = []
        for i in range(runs):
            server = self._start(target)
            times.append(server.cold_start_s)
            if i < runs - 1:
                server.stop()
        return times, server

    def drive(self, host: str, scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
        spec = {"host": host, "batch_files": self.opts.batch_files, "scenarios": scenarios}
        spec_path = self.workdir / "spec.json"
        out_path = self.workdir / "driver-out.json"
        spec_path.write_text(json.dumps(spec))
        out_path.unlink(missing_ok=True)
        budget = sum(s["seconds"] + s.get("warmup_s", 0) for sc in scenarios for s in sc["steps"])
        cmd = [sys.executable, "-m", "benchmarks.load.driver"]
        done = subprocess.run(
            [*cmd, str(spec_path), str(out_path)],
            capture_output=True,
            text=True,
            timeout=budget + 300,
            env=child_env(),
            check=False,
        )
        if done.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"load driver failed ({done.returncode}):\n{done.stderr[-3000:]}")
        results: list[dict[str, Any]] = json.loads(out_path.read_text())["scenarios"]
        return results

    def _body(self, payload: str, hard: bytes | None) -> Path:
        body = self.workdir / f"body-{payload}.bin"
        if payload == "hard":
            assert hard is not None
            body.write_bytes(hard)
        elif not body.exists():
            pool = build_pool(png_count=1, jpeg_count=1, batch_count=0)
            body.write_bytes(pool.png[0] if payload == "png" else pool.jpeg[0])
        return body

    def hey(
        self, host: str, name: str, seconds: float | None = None, hard: bytes | None = None
    ) -> dict[str, Any]:
        """The ``hey_scenarios`` entry ``name`` against ``host`` (``seconds``: the sweep's)."""
        if hey_mod.hey_path() is None:
            raise RuntimeError("hey is not installed (apt-get install -y hey)")
        sc = hey_scenarios(self.opts)[name]
        duration = float(getattr(self.opts, sc.duration))
        if seconds is not None and name != "warmup":
            duration = seconds
        result = hey_mod.run_hey(
            f"{host}/v1/predict",
            self._body(sc.payload, hard),
            CONTENT_TYPE,
            seconds=duration,
            connections=sc.connections or self.opts.hey_connections,
            rate_per_connection=sc.rate_per_connection,
        )
        result["name"] = name
        return result

    @staticmethod
    def _attach(result: dict[str, Any], monitor: TreeMonitor) -> dict[str, Any]:
        window = monitor.window(result["t0"], result["t1"])
        result["resources"] = asdict(window)
        for step in result.get("steps", []):
            step["resources"] = asdict(monitor.window(step["t0"], step["t1"]))
        return result

    # -- one server, many scenarios ---------------------------------------------------------

    def measure(
        self,
        target: Target,
        plan: list[list[dict[str, Any]] | str],
        cold_runs: int,
        hey_s: float | None = None,
    ) -> dict[str, Any]:
        """``plan``: lists of Locust scenarios, or ``hey_scenarios`` names, in order."""
        self.log(f"[{target.label}] {target.description}")
        cold, server = self.cold_starts(target, cold_runs)
        self.log(f"  cold start: {', '.join(f'{c:.2f} s' for c in cold)}")
        monitor = TreeMonitor(server.pid, self.opts.sample_interval_s).start()
        scenarios: dict[str, Any] = {}
        try:
            for item in plan:
                if isinstance(item, str):
                    if item == "hey_png_hard" and target.hard_body is None:
                        continue
                    result = self.hey(server.base_url, item, hey_s, target.hard_body)
                    if item == "warmup":
                        continue
                    if target.label in ("tuned", "extra"):
                        result["cascade"] = _cascade_counters(server.base_url)
                    scenarios[item] = self._attach(result, monitor)
                    self._log_stats(item, result)
                    continue
                assert isinstance(item, list)
                for result in self.drive(server.base_url, item):
                    scenarios[result["name"]] = self._attach(result, monitor)
                    self._log_stats(result["name"], result)
                if server.process.poll() is not None:
                    raise RuntimeError(f"{target.label} died:\n{server.log_tail()}")
        finally:
            monitor.stop()
            server.stop()
        first, last = monitor.samples[0].t, monitor.samples[-1].t
        overall = monitor.window(first, last)
        soak = scenarios.get("soak_png")
        if soak is not None:
            soak["rss_series"] = monitor.series(soak["t0"], soak["t1"])
        return {
            "label": target.label,
            "peer": target.peer,
            "version": target.version,
            "model": target.model,
            "variant": target.variant,
            "description": target.description,
            "env": target.env,
            "cold_start_s": cold,
            "peak_rss_mb": overall.peak_rss_mb,
            "peak_pss_mb": overall.peak_pss_mb,
            "scenarios": scenarios,
        }

    def _log_stats(self, name: str, result: dict[str, Any]) -> None:
        s = result["stats"]
        res = result.get("resources", {})
        p95 = s.get("p95_ms")
        self.log(
            f"  {name:<16} {s['rps']:8.1f} req/s {s['images_per_s']:8.1f} img/s "
            f"p95 {p95 if p95 is None else round(p95, 1)} ms  errors {s['errors']}  "
            f"cpu {res.get('cpu_percent_machine', float('nan')):.0f}%  "
            f"rss {res.get('peak_rss_mb', 0):.0f} MB"
        )

    # -- the plans ----------------------------------------------------------------------------

    def full_plan(self) -> Plan:
        """The service with its default model: the peers' plan, its worst case, then the
        scenarios only it has (batch endpoint, mix) and the ramp and soak."""
        o = self.opts
        return [
            *PEER_PLAN,
            "hey_png_hard",
            [
                saturation_scenario("batch", {"batch": 1}, o.batch_users, o.saturation_s),
                saturation_scenario(
                    "mix", {"png": 7, "jpeg": 2, "batch": 1}, o.mix_users, o.saturation_s
                ),
                ramp_scenario(o),
                soak_scenario(o, o.soak_s),
            ],
        ]

    def extra_plan(self) -> Plan:
        o = self.opts
        batch = saturation_scenario("batch", {"batch": 1}, o.batch_users, o.saturation_s)
        return [*PEER_PLAN, [batch]]

    def http_only_plan(self) -> Plan:
        """The trivial model gets every scenario a target reads (the peers' plan and the batch
        endpoint): what the service costs with a model that costs nothing, the floor of each
        target on this machine, measured in the same run."""
        return self.extra_plan()

    def tuned_target(
        self, settings: TunedSettings, model: Path, label: str, variant: str | None = None
    ) -> Target:
        env = settings.env()
        if variant is not None:
            env[f"{SERVICE_ENV_PREFIX}MODEL_VARIANT"] = variant
        served = variant or _default_variant()
        first = _cascade_first_stage(model) if served == "cascade" else None
        return Target(
            label,
            f"product-classifier serve, {model}, variant {served} ({settings.label()})",
            lambda port: _service_cmd(port, model),
            env,
            str(model),
            served,
            _least_confident_png(first) if first is not None else None,
        )

    # -- the whole run ------------------------------------------------------------------------

    def inference_only(self, model: Path) -> list[dict[str, Any]]:
        from benchmarks.load import probe

        o = self.opts
        batches = (1, 16) if o.smoke else (1, 8, 16, 32, 64)
        rows = []
        for threads in (1, 2):
            for batch in batches:
                rows.append(probe.measure(model, batch, threads, o.inference_probe_s))
        for batch in (1, 16):
            if not o.smoke or batch == 1:
                rows.append(probe.measure_parallel(model, batch, 1, o.inference_probe_s, 2))
        for row in rows:
            row["model"] = str(model)
            self.log(
                f"  {model.name}: batch {row['batch']:>2} x{row.get('processes', 1)} proc "
                f"{row['threads']} thr: {row['images_per_s']:7.0f} img/s, "
                f"{row['cpu_ms_per_image']:.2f} CPU-ms/img"
            )
        return rows

    def run_sweep(self) -> list[dict[str, Any]]:
        o = self.opts
        plan: Plan = ["warmup", "rate_png", "hey_png", "hey_jpeg"]
        rows = []
        for settings in SWEEP:
            target = self.tuned_target(settings, o.model, "sweep")
            result = self.measure(target, plan, 1, hey_s=o.sweep_s)
            rows.append({**result, "settings": asdict(settings), "label": settings.label()})
        return rows

    def peer_targets(self) -> list[Target]:
        """The configured peers; raises before anything runs when one is not installed."""
        from product_classifier.resources import usable_cores

        o = self.opts
        known = peers(usable_cores())
        unknown = [key for key in o.peers if key not in known]
        if unknown:
            raise ValueError(f"unknown peers {unknown}; known: {', '.join(known)}")
        chosen: list[Peer] = [known[key] for key in o.peers]
        missing = [m for m in (peer.missing(o.peers_dir) for peer in chosen) if m]
        if missing:
            raise RuntimeError("; ".join(missing))
        return [
            Target(
                "peer",
                f"{peer.name}, {o.model.name} with ONNX Runtime",
                functools.partial(peer.command, o.peers_dir),
                peer.env(o.model),
                str(o.model),
                "int8",
                ready_path=peer.ready_path,
                cwd=REPO_ROOT,
                peer=peer.key,
                version=peer.version(o.peers_dir),
            )
            for peer in chosen
        ]

    def run(self) -> dict[str, Any]:
        o = self.opts
        peer_targets = self.peer_targets()
        started = time.time()
        load_start = os.getloadavg()
        results: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "smoke": o.smoke,
            "options": _jsonable(asdict(o)),
            "machine": machine_info(),
            "loadavg_start": load_start,
        }
        results["service_settings"] = service_settings(o.settings)
        results["served_files"] = served_files(o.model)
        self.log(f"load average at start: {load_start}")
        self.log("[inference only]")
        results["inference_only"] = self.inference_only(o.model)
        first_stage = _cascade_first_stage(o.model)
        if first_stage is not None:
            results["inference_only"] += self.inference_only(first_stage)
            results["cascade"] = _cascade_summary(o.model)
        expert = _picture_expert(o.model)
        if expert is not None:  # real pictures' second opinion: every picture pays for it
            results["inference_only"] += self.inference_only(expert)
        if o.sweep:
            results["sweep"] = self.run_sweep()
        results["tuned"] = self.measure(
            self.tuned_target(o.settings, o.model, "tuned"), self.full_plan(), o.cold_start_runs
        )
        results["extra_models"] = [
            self.measure(self.tuned_target(o.settings, o.model, "extra", v), self.extra_plan(), 1)
            for v in o.extra_variants
        ]
        results["peers"] = [self.measure(t, list(PEER_PLAN), 1) for t in peer_targets]
        if o.baseline_checkpoint is not None:
            if o.baseline_checkpoint.exists():
                checkpoint = o.baseline_checkpoint
                target = Target(
                    "baseline",
                    f"naive FastAPI + PyTorch eager, one image per call ({checkpoint})",
                    lambda port: _torch_cmd(port, checkpoint),
                    {"PYTHONPATH": child_env()["PYTHONPATH"]},
                )
                results["baseline"] = self.measure(target, list(PEER_PLAN), 1)
            else:
                self.log(f"baseline checkpoint {o.baseline_checkpoint} not found: no baseline")
                results["baseline_missing"] = str(o.baseline_checkpoint)
        if o.http_only:
            trivial = self._trivial_model()
            results["http_only"] = self.measure(
                self.tuned_target(o.settings, trivial, "http_only"), self.http_only_plan(), 1
            )
        results["loadavg_end"] = os.getloadavg()
        results["wall_s"] = time.time() - started
        self.log(f"load average at end: {results['loadavg_end']}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        return results

    def _trivial_model(self) -> Path:
        from product_classifier.inference.contract_model import (
            build_contract_model,
            write_model_card,
        )

        model = build_contract_model(self.workdir / "trivial" / "model.onnx", seed=0)
        write_model_card(model)
        return model


def served_files(model: Path) -> dict[str, str]:
    """File name -> sha256 of what every server loads (and the cascade's first stage and the
    pictures' expert, which only this project's service loads): which release the figures
    belong to."""
    from product_classifier.provenance import sha256_file

    files = [model, _cascade_first_stage(model), _picture_expert(model)]
    return {f.name: sha256_file(f) for f in files if f is not None and f.is_file()}


def service_settings(tuned: TunedSettings) -> dict[str, Any]:
    """The measured service's batching and process settings: its defaults (not this
    process's environment, which the servers do not inherit) with ``tuned`` on top."""
    from product_classifier.serving.settings import ServeSettings

    overrides = {k: v for k, v in asdict(tuned).items() if v is not None}
    s = ServeSettings.model_construct(**overrides)
    return {
        "model_variant": s.model_variant,
        "workers": f"{s.workers} (resolved: {s.resolved_workers})",
        "intra_op_threads": s.intra_op_threads,
        "inter_op_threads": s.inter_op_threads,
        "model_concurrency": f"{s.model_concurrency} (resolved: {s.batch_concurrency})",
        "max_batch_size": s.max_batch_size,
        "max_wait_ms": s.max_wait_ms,
        "queue_size": s.queue_size,
        "access_log": s.access_log,
    }


def _default_variant() -> str:
    from product_classifier.serving.settings import ServeSettings

    return str(ServeSettings.model_fields["model_variant"].default)


def _card(model: Path) -> dict[str, Any] | None:
    from product_classifier.inference.model_card import default_card_path, load_model_card

    card_path = default_card_path(model)
    return load_model_card(card_path) if card_path.is_file() else None


def _picture_expert(model: Path) -> Path | None:
    """The picture expert the card beside ``model`` names (the pictures' second opinion)."""
    from product_classifier.inference.model_card import picture_expert_spec

    card = _card(model)
    spec = picture_expert_spec(card) if card else None
    return model.with_name(spec["file"]) if spec else None


def _cascade_first_stage(model: Path) -> Path | None:
    """The first-stage file of the cascade the card beside ``model`` describes, if any."""
    from product_classifier.inference.model_card import cascade_spec

    card = _card(model)
    spec = cascade_spec(model, card) if card else None
    return model.with_name(spec["first"]["file"]) if spec else None


def _cascade_summary(model: Path) -> dict[str, Any]:
    from product_classifier.inference.model_card import default_card_path, load_model_card

    spec = load_model_card(default_card_path(model))["cascade"]
    return {
        "first": spec["first"]["file"],
        "second": spec["second"],
        "threshold": spec["threshold"],
        "escalated_test": spec["escalated_fraction"]["test"],
    }


@functools.cache  # every sweep setting and the tuned run serve the same files
def _least_confident_png(first_stage: Path, count: int = 256) -> bytes:
    """The pool's PNG body the cascade's first stage is least sure of: every request with it
    is escalated to the big model, the cascade's worst case."""
    from product_classifier.inference.predictor import OnnxPredictor
    from product_classifier.preprocessing import to_model_input

    images = sample_test_images(count)
    confidence = OnnxPredictor(first_stage).predict_proba(to_model_input(images)).max(axis=1)
    body: bytes = build_pool(png_count=count, jpeg_count=0, batch_count=0).png[
        int(np.argmin(confidence))
    ]
    return body


def _cascade_counters(host: str) -> dict[str, Any] | None:
    """The cascade counters of whichever worker answers (a sample with several workers)."""
    try:
        runtime = httpx.get(f"{host}/v1/model", timeout=5.0).json()["runtime"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    cascade: dict[str, Any] | None = runtime.get("cascade")
    if cascade is None:
        return None
    return {k: cascade[k] for k in ("threshold", "rows", "escalated", "escalated_fraction")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import psutil

    from product_classifier.resources import available_cpus

    return {
        # The host's CPUs describe the machine (and scale its load average, which counts every
        # process on the host); usable_cpus is what this run may use (resources.py).
        "cpu_count": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        "hey": hey_mod.hey_path() is not None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

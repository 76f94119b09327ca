"""Load-test results -> JSON (reports/performance/, docs/evidence/) and docs/performance.md.

Every figure in the Markdown comes from the results of the run that writes it: the peers'
table and the ratios to each peer, the targets' status, the analysis bullets (computed from
the inference-only probes, the trivial-model server and the CPU samples) and the settings of
the measured service (read from the service's own defaults). Nothing is typed in by hand, so
a rerun updates all of it; the reasons behind the design are in docs/architecture.md.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT
from product_classifier.reporting import markdown_table

Results = dict[str, Any]


# -- derived figures ------------------------------------------------------------------------------


def soak_growth(scenario: dict[str, Any] | None) -> dict[str, float] | None:
    """RSS at the end vs the start of the soak (medians of the first and last 10% of samples)."""
    if not scenario or not scenario.get("rss_series"):
        return None
    rss = [mb for _, mb in scenario["rss_series"]]
    k = max(1, len(rss) // 10)
    start, end = statistics.median(rss[:k]), statistics.median(rss[-k:])
    return {
        "start_mb": start,
        "end_mb": end,
        "peak_mb": max(rss),
        "growth_percent": 100.0 * (end - start) / start if start else float("nan"),
        "minutes": scenario["rss_series"][-1][0] / 60.0,
    }


def _stat(server: Results | None, scenario: str, key: str) -> float | None:
    if not server:
        return None
    sc = server["scenarios"].get(scenario)
    if sc is None:
        return None
    value = sc["stats"][key] if key in sc["stats"] else sc.get("resources", {}).get(key)
    return None if value is None else float(value)


def _cold(server: Results | None) -> float | None:
    if not server or not server.get("cold_start_s"):
        return None
    return float(statistics.median(server["cold_start_s"]))


def _cpu_ms_per_request(server: Results | None, scenario: str, cores: int) -> float | None:
    """Server CPU time per answered request during ``scenario`` (all its processes)."""
    cpu, rps = _stat(server, scenario, "cpu_percent_machine"), _stat(server, scenario, "rps")
    if cpu is None or not rps or math.isnan(cpu):
        return None
    return cpu / 100.0 * cores * 1000.0 / rps


# -- the comparison with the peers ----------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    title: str
    get: Callable[[Results | None], float | None]
    higher_is_better: bool


def _sc(scenario: str, key: str) -> Callable[[Results | None], float | None]:
    return lambda s: _stat(s, scenario, key)


METRICS = (
    Metric("PNG x64 req/s", _sc("hey_png", "rps"), True),
    Metric("PNG x64 p50 ms", _sc("hey_png", "p50_ms"), False),
    Metric("PNG x64 p95 ms", _sc("hey_png", "p95_ms"), False),
    Metric("PNG x64 p99 ms", _sc("hey_png", "p99_ms"), False),
    Metric("lone request p50 ms", _sc("seq_png", "p50_ms"), False),
    Metric("lone request p95 ms", _sc("seq_png", "p95_ms"), False),
    Metric("100 req/s p50 ms", _sc("rate_png", "p50_ms"), False),
    Metric("100 req/s p95 ms", _sc("rate_png", "p95_ms"), False),
    Metric("100 req/s p99 ms", _sc("rate_png", "p99_ms"), False),
    Metric("100 req/s CPU %", _sc("rate_png", "cpu_percent_machine"), False),
    Metric("JPEG x64 req/s", _sc("hey_jpeg", "rps"), True),
    Metric("JPEG x64 p95 ms", _sc("hey_jpeg", "p95_ms"), False),
    Metric("peak RSS MB", lambda s: s["peak_rss_mb"] if s else None, False),
    Metric("cold start s", _cold, False),
)


def server_name(server: Results) -> str:
    if server["label"] == "peer":
        name = str(server["description"]).split(", " + Path(server["model"]).name)[0]
        return f"{name} ({server['version']})" if server.get("version") else name
    if server["label"] == "baseline":
        return "PyTorch eager, naive FastAPI, 1 worker (extra row)"
    return f"this project, {server.get('variant') or Path(server['model']).name}"


def ours(results: Results) -> list[Results]:
    """The service with its default model, then the other variants of the same files."""
    return [s for s in (results.get("tuned"), *results.get("extra_models", [])) if s]


def peer_table(results: Results) -> str:
    servers = [*ours(results), *results.get("peers", [])]
    if results.get("baseline"):
        servers.append(results["baseline"])
    rows = [[server_name(s), *[fmt(m.get(s)) for m in METRICS]] for s in servers]
    return markdown_table(["server", *[m.title for m in METRICS]], rows, align="lr")


def ratio_table(project: Results, peers: list[Results]) -> str:
    """``project`` / each peer, for every metric: >1 is better for req/s, <1 for the rest."""
    rows = [
        [server_name(peer), *[ratio(m.get(project), m.get(peer)) for m in METRICS]]
        for peer in peers
    ]
    return markdown_table(
        [f"{server_name(project)} ÷", *[m.title for m in METRICS]], rows, align="lr"
    )


def headline(results: Results) -> list[str]:
    """One sentence per peer: the default service's figures as ratios to that peer's."""
    tuned = results["tuned"]
    lines = []
    for peer in results.get("peers", []):

        def r(metric: str, peer: Results = peer) -> str:
            m = next(m for m in METRICS if m.title == metric)
            return ratio(m.get(tuned), m.get(peer))

        lines.append(
            f"* vs {server_name(peer)}: **{r('PNG x64 req/s')}** the req/s at 64 connections, "
            f"{r('lone request p50 ms')} the lone-request p50, {r('100 req/s p95 ms')} the p95 "
            f"at 100 req/s, {r('JPEG x64 req/s')} the 600x600 JPEG req/s, "
            f"{r('cold start s')} the cold start, {r('peak RSS MB')} the RSS."
        )
    return lines


# -- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    unit: str
    limit: float
    higher_is_better: bool
    get: Callable[[Results | None], float | None]

    def met(self, value: float | None) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value >= self.limit if self.higher_is_better else value <= self.limit


def _soak(s: Results | None) -> float | None:
    growth = soak_growth(s["scenarios"].get("soak_png") if s else None)
    return growth["growth_percent"] if growth else None


# The service's targets (latency at the physical floor); the peers' figures are beside them.
CHECKS = (
    Check("lone request: p50 latency", "ms", 1.5, False, _sc("seq_png", "p50_ms")),
    Check("28x28 PNG, 64 connections: throughput", "req/s", 3000, True, _sc("hey_png", "rps")),
    Check("28x28 PNG, 64 connections: p95 latency", "ms", 30, False, _sc("hey_png", "p95_ms")),
    Check("100 req/s: p95 latency", "ms", 8, False, _sc("rate_png", "p95_ms")),
    Check(
        "100 req/s: server CPU, % of machine",
        "%",
        5,
        False,
        _sc("rate_png", "cpu_percent_machine"),
    ),
    Check("100 req/s: errors", "", 0, False, _sc("rate_png", "errors")),
    Check("600x600 JPEG, 64 connections: throughput", "req/s", 1500, True, _sc("hey_jpeg", "rps")),
    Check("batch endpoint: images/s", "img/s", 5000, True, _sc("batch", "images_per_s")),
    Check("cold start to /ready (median)", "s", 1.0, False, _cold),
    Check("peak RSS, all processes", "MB", 220, False, lambda s: s["peak_rss_mb"] if s else None),
    Check("soak: RSS growth", "%", 5, False, _soak),
)


_STATUS = {True: "**met**", False: "not met", None: "–"}


def targets_table(results: Results) -> str:
    tuned, floor = results["tuned"], results.get("http_only")
    best_peer = {c.name: _best_peer(results, c) for c in CHECKS}
    rows = []
    for check in CHECKS:
        value = check.get(tuned)
        op = "≥" if check.higher_is_better else "≤"
        peer = best_peer[check.name]
        # The same service on a model that costs nothing: if even that misses a target, no
        # model can meet it on this machine without a cheaper HTTP layer.
        floor_value = check.get(floor) if floor else None
        rows.append(
            [
                check.name,
                f"{op} {check.limit:,g} {check.unit}".strip(),
                fmt(value),
                _STATUS[check.met(value)],
                f"{fmt(floor_value)} ({_STATUS[check.met(floor_value)]})"
                if floor_value is not None
                else "–",
                f"{fmt(check.get(peer))} ({peer['peer']})" if peer else "–",
            ]
        )
    header = ["target", "limit", "this project", "status", "trivial model", "best peer"]
    return markdown_table(header, rows, align="lr")


def _best_peer(results: Results, check: Check) -> Results | None:
    scored = [(check.get(p), p) for p in results.get("peers", [])]
    valid = [(v, p) for v, p in scored if v is not None and not math.isnan(v)]
    if not valid:
        return None
    pick = max if check.higher_is_better else min
    return pick(valid, key=lambda vp: vp[0])[1]


# -- formatting -----------------------------------------------------------------------------------


def fmt(value: float | None, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def ratio(ours_value: float | None, theirs: float | None) -> str:
    if ours_value is None or theirs is None or theirs == 0:
        return "–"
    if math.isnan(ours_value) or math.isnan(theirs):
        return "–"
    return f"{ours_value / theirs:.2f}×"


_SCENARIO_TITLES = {
    "seq_png": "28x28 PNG, hey, 1 connection",
    "hey_png": "28x28 PNG, hey, 64 connections",
    "rate_png": "28x28 PNG at a steady 100 req/s (hey -q)",
    "hey_jpeg": "600x600 JPEG, hey, 64 connections",
    "hey_png_hard": "28x28 PNG the first stage is unsure of (always escalated), hey, 64 conn.",
    "batch": "batch endpoint, closed loop (Locust)",
    "mix": "mix 70% PNG / 20% JPEG / 10% batch (Locust)",
    "ramp_png": "28x28 PNG, closed loop, ramp (Locust, last step)",
    "soak_png": "soak: 28x28 PNG at 100 req/s (Locust)",
}

_COLUMNS = (
    ("req/s", "rps"),
    ("img/s", "images_per_s"),
    ("mean ms", "mean_ms"),
    ("p50 ms", "p50_ms"),
    ("p95 ms", "p95_ms"),
    ("p99 ms", "p99_ms"),
    ("errors %", "error_rate"),
    ("CPU % machine", "cpu_percent_machine"),
    ("peak RSS MB", "peak_rss_mb"),
    ("peak PSS MB", "peak_pss_mb"),
)


def _value(server: Results | None, scenario: str, key: str) -> float | None:
    value = _stat(server, scenario, key)
    return value * 100.0 if key == "error_rate" and value is not None else value


def scenario_table(server: Results) -> str:
    rows = []
    for name, title in _SCENARIO_TITLES.items():
        if name not in server["scenarios"]:
            continue
        sc = server["scenarios"][name]
        users = sc["steps"][-1]["users"] if sc.get("steps") else None
        label = title + (f" ({users} users)" if users and name != "soak_png" else "")
        rows.append([label, *[fmt(_value(server, name, key)) for _, key in _COLUMNS]])
    return markdown_table(["scenario", *[c[0] for c in _COLUMNS]], rows, align="lr")


def ramp_table(server: Results) -> str:
    ramp = server["scenarios"].get("ramp_png")
    if not ramp:
        return "(no ramp in this run)"
    rows = []
    for step in ramp["steps"]:
        s, r = step["stats"], step.get("resources", {})
        rows.append(
            [
                str(step["users"]),
                fmt(s["rps"]),
                fmt(s.get("mean_ms")),
                fmt(s.get("p50_ms")),
                fmt(s.get("p95_ms")),
                fmt(s.get("p99_ms")),
                fmt(100.0 * s["error_rate"]),
                fmt(r.get("cpu_percent_machine")),
                fmt(r.get("peak_rss_mb")),
            ]
        )
    header = ["connections", "req/s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "errors %"]
    return markdown_table([*header, "CPU % machine", "peak RSS MB"], rows, align="lr")


def soak_table(server: Results) -> str:
    soak = server["scenarios"].get("soak_png")
    if not soak or not soak.get("buckets"):
        return "(no soak in this run)"
    series = soak.get("rss_series", [])
    rows = []
    for bucket in soak["buckets"]:
        t0, t1 = bucket["t_s"], bucket["t_s"] + bucket["seconds"]
        rss = [mb for t, mb in series if t0 <= t <= t1]
        rows.append(
            [
                f"{t0:.0f}–{t1:.0f}",
                fmt(bucket["rps"]),
                fmt(bucket.get("mean_ms")),
                fmt(bucket.get("p95_ms")),
                fmt(bucket.get("p99_ms")),
                str(bucket["errors"]),
                fmt(max(rss) if rss else None),
            ]
        )
    header = ["seconds", "req/s", "mean ms", "p95 ms", "p99 ms", "errors", "RSS MB (max)"]
    return markdown_table(header, rows, align="lr")


def plot_soak(results: Results, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soak = results["tuned"]["scenarios"].get("soak_png")
    if not soak or not soak.get("rss_series"):
        return None
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    t = [x for x, _ in soak["rss_series"]]
    mb = [y for _, y in soak["rss_series"]]
    growth = soak_growth(soak)
    suffix = f" ({growth['growth_percent']:+.1f}%)" if growth else ""
    ax.plot(t, mb, "-", label=f"this project{suffix}")
    ax.set_xlabel("seconds into the soak (28x28 PNG at 100 req/s)")
    ax.set_ylabel("RSS, all server processes (MB)")
    ax.set_ylim(0, 1.15 * max(mb))  # room above a flat line, so that it shows
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Server memory during the soak")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# -- analysis -------------------------------------------------------------------------------------


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: r["images_per_s"]) if rows else {}


def cascade_cost(results: Results) -> dict[str, Any] | None:
    """CPU-ms per image of the served cascade: first stage + escalated share x second stage,
    from this run's inference-only rows and the card's test-set escalation rate."""
    cascade = results.get("cascade")
    rows = results.get("inference_only", [])
    if not cascade or not rows:
        return None

    def best(name: str) -> dict[str, Any]:
        return _best([r for r in rows if Path(r.get("model", "")).name == name])

    first, second = best(cascade["first"]), best(cascade["second"])
    if not first or not second:
        return None
    share = float(cascade["escalated_test"])
    ms = first["cpu_ms_per_image"] + share * second["cpu_ms_per_image"]
    return {"first": first, "second": second, "share": share, "cpu_ms_per_image": ms}


def inference_table(results: Results) -> str:
    rows = [
        [
            Path(r.get("model", "")).name,
            str(r["batch"]),
            str(r.get("processes", 1)),
            str(r["threads"]),
            fmt(r["images_per_s"]),
            fmt(r["ms_per_call"]),
            fmt(r["cpu_ms_per_image"]),
        ]
        for r in results.get("inference_only", [])
    ]
    header = ["model", "batch", "processes", "threads each", "images/s", "ms per call"]
    return markdown_table([*header, "CPU ms/image"], rows, align="lr")


def bottleneck_text(results: Results) -> str:
    tuned, http = results["tuned"], results.get("http_only")
    machine = results["machine"]  # runs before usable_cpus was recorded have cpu_count only
    cores = machine.get("usable_cpus") or machine.get("cpu_count") or 1
    lines = []
    cost = cascade_cost(results)
    if cost:
        second = cost["second"]["cpu_ms_per_image"]
        lines.append(
            f"* **The cascade** (inference/cascade.py): the first stage "
            f"({results['cascade']['first']}) costs {fmt(cost['first']['cpu_ms_per_image'])} "
            f"CPU-ms per image at its best batch, the released model "
            f"({results['cascade']['second']}) {fmt(second)}. With "
            f"{fmt(100 * cost['share'], 1)}% of the test images escalated (threshold "
            f"{results['cascade']['threshold']}), an image costs ~"
            f"{fmt(cost['cpu_ms_per_image'])} CPU-ms of model, "
            f"{fmt(second / cost['cpu_ms_per_image'])}x less than the released model alone: "
            f"{cores:g} busy cores could classify "
            f"~{fmt(1000 * cores / cost['cpu_ms_per_image'])} images/s (the released model "
            f"alone: ~{fmt(1000 * cores / second)})."
        )
    http_rps, tuned_rps = _stat(http, "hey_png", "rps"), _stat(tuned, "hey_png", "rps")
    if http_rps and tuned_rps:
        lines.append(
            f"* **HTTP ceiling**: the same service on a trivial model (one Gemm) answers "
            f"**{fmt(http_rps)} req/s** over 64 connections; the served model reaches "
            f"{fmt(tuned_rps)} req/s ({fmt(100.0 * tuned_rps / http_rps, 0)}% of it)."
        )
    steady_cpu = _stat(tuned, "rate_png", "cpu_percent_machine")
    http_cpu = _stat(http, "rate_png", "cpu_percent_machine")
    if steady_cpu is not None and http_cpu is not None:
        lines.append(
            f"* **CPU at 100 req/s**: {fmt(steady_cpu)}% of the machine with the real model, "
            f"{fmt(http_cpu)}% with the trivial model: HTTP + decoding cost "
            f"{fmt(http_cpu)} points, the model the other {fmt(steady_cpu - http_cpu)}."
        )
    png_ms = _cpu_ms_per_request(tuned, "hey_png", cores)
    jpeg_ms = _cpu_ms_per_request(tuned, "hey_jpeg", cores)
    if png_ms and jpeg_ms:
        lines.append(
            f"* **Catalog photos**: at 64 connections a 600x600 JPEG request costs the server "
            f"{fmt(jpeg_ms)} CPU-ms, a 28x28 PNG {fmt(png_ms)}: decoding and reducing the "
            f"photo cost the difference, {fmt(jpeg_ms - png_ms)} CPU-ms."
        )
    http_ms = _cpu_ms_per_request(http, "hey_png", cores)
    per_image = cost["cpu_ms_per_image"] if cost else None
    if per_image and http_ms and tuned_rps:
        bound = 1000.0 * cores / (per_image + http_ms)
        lines.append(
            f"* **What bounds req/s**: a request costs ~{fmt(per_image)} CPU-ms of model "
            f"(batched) plus {fmt(http_ms)} CPU-ms of HTTP, multipart and decoding (the "
            f"trivial-model server at 64 connections), so {cores} fully busy cores serve at "
            f"most ~{fmt(bound)} req/s before the load generator on the same cores takes its "
            f"share; measured: {fmt(tuned_rps)} req/s."
        )
    batch = _stat(tuned, "batch", "images_per_s")
    if per_image and batch is not None:
        lines.append(
            f"* **Batch endpoint**: at ~{fmt(per_image)} CPU-ms per image the model alone can "
            f"do at most ~{fmt(1000.0 * cores / per_image)} images/s on {cores} busy cores, "
            f"before decoding and HTTP; the endpoint reached {fmt(batch)}."
        )
    connections = results["options"]["hey_connections"]
    if tuned_rps:
        lines.append(
            f"* **Latency at 64 connections** is queueing: by Little's law {connections} "
            f"connections at {fmt(tuned_rps)} req/s wait {fmt(1000 * connections / tuned_rps)} "
            f"ms on average."
        )
    return "\n".join(lines)


def settings_table(results: Results) -> str:
    settings = results.get("service_settings") or {}
    rows = [[key, str(value)] for key, value in settings.items()]
    return markdown_table(["setting", "value"], rows, align="llr") if rows else "(not recorded)"


def sweep_table(results: Results) -> str:
    rows = []
    for entry in results.get("sweep", []):
        rows.append(
            [
                entry["label"],
                fmt(_stat(entry, "rate_png", "p95_ms")),
                fmt(_stat(entry, "rate_png", "cpu_percent_machine")),
                fmt(_stat(entry, "hey_png", "rps")),
                fmt(_stat(entry, "hey_png", "p95_ms")),
                fmt(_stat(entry, "hey_jpeg", "rps")),
                fmt(entry["peak_rss_mb"]),
                fmt(entry.get("peak_pss_mb")),
            ]
        )
    header = ["settings", "100 rps p95 ms", "100 rps CPU %", "PNG x64 req/s", "PNG x64 p95 ms"]
    return markdown_table(
        [*header, "JPEG x64 req/s", "peak RSS MB", "peak PSS MB"], rows, align="lr"
    )


# -- the document ---------------------------------------------------------------------------------


def render_markdown(results: Results, soak_png: str | None, evidence: str | None) -> str:
    tuned = results["tuned"]
    machine = results["machine"]
    la0, la1 = results["loadavg_start"], results["loadavg_end"]
    # Only the start says whether others used the machine: the end is this run's own load.
    busy = la0[0] > 0.5 * (machine["cpu_count"] or 1)
    o = results["options"]
    raw = f"[{evidence}]({evidence})" if evidence else "`reports/performance/latest.json`"
    peers = results.get("peers", [])
    out = [
        "# Performance of the HTTP API",
        "",
        f"Generated by `make loadtest` (`python -m benchmarks load`) on {results['started']}; "
        f"the raw figures of this run are in {raw}. Do not edit by hand: rerun instead. Why the "
        "service is built the way it is: [architecture.md](architecture.md).",
        "",
        f"* Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GB; Python {machine['python']}, onnxruntime "
        f"{machine['onnxruntime']}. The load generators (hey, Locust) run on the same cores.",
        f"* Load average (1/5/15 min) at start {', '.join(fmt(x, 2) for x in la0)}, at end "
        f"{', '.join(fmt(x, 2) for x in la1)} (the end is this run's own load)."
        + (
            " **The machine was busy with other work: latencies and throughputs below are "
            "pessimistic; rerun `make loadtest` on a quiet machine.**"
            if busy
            else ""
        ),
        *[
            "* Served files (sha256): "
            + ", ".join(f"`{name}` {digest[:12]}" for name, digest in files.items())
            + "."
            for files in [results.get("served_files")]
            if files
        ],
        f"* Every server serves `{Path(tuned['model']).name}` (the peers with ONNX Runtime, "
        "one intra-op and one inter-op thread per worker, like the service) and gets the same "
        f"hey runs: 1 connection for {fmt(o['seq_s'])} s, {o['hey_connections']} connections "
        f"for {fmt(o['hey_s'])} s (28x28 PNG, then a 600x600 JPEG), a steady "
        f"{fmt(o['steady_rps'])} req/s for {fmt(o['steady_s'])} s, after a "
        f"{fmt(o['warmup_s'])} s warm-up that is not counted. Whole run "
        f"{fmt(results['wall_s'] / 60, 1)} min."
        + (" **Smoke run: figures are meaningless.**" if results["smoke"] else ""),
        "",
        "## Against its peers (same run)",
        "",
        *headline(results),
        "",
        "Latency is client-side; CPU is the server's whole process tree as a share of all "
        "cores (100% = every core busy); RSS is summed over its processes at its peak during "
        "the run; cold start is process start to the first ready answer (median of the runs).",
        "",
        peer_table(results),
        "",
    ]
    for project in ours(results):
        if peers:
            out += [
                f"### {server_name(project)}, as a ratio to each peer",
                "",
                "Above 1 is better for req/s, below 1 for latency, CPU, RSS and cold start.",
                "",
                ratio_table(project, peers),
                "",
            ]
    out += [
        "## Targets",
        "",
        "The service with its default model; `trivial model` is the same service, same run, "
        "on a one-Gemm model that costs nothing (a target it misses too is out of reach for "
        "any model on this machine until the HTTP layer itself costs less); `best peer` is "
        "the peer closest to the target.",
        "",
        targets_table(results),
        "",
        "## Where the time goes",
        "",
        "Inference only (onnxruntime on ready batches, no HTTP, no decoding):",
        "",
        inference_table(results),
        "",
        bottleneck_text(results),
        "",
        "## The measured service's settings",
        "",
        "The service's defaults (`serving/settings.py`), i.e. what `product-classifier serve` "
        "runs; why: [architecture.md](architecture.md).",
        "",
        settings_table(results),
        "",
        "## Every scenario of the service",
        "",
        scenario_table(tuned),
        "",
        "### Ramp (28x28 PNG, closed loop)",
        "",
        ramp_table(tuned),
        "",
    ]
    if "hey_png" in tuned["scenarios"]:
        out += ["The 64-connection run:", "", "```", tuned["scenarios"]["hey_png"]["command"]]
        out += ["```", ""]
    out += ["## Soak", ""]
    if soak_png:
        out += [f"![RSS during the soak]({soak_png})", ""]
    growth = soak_growth(tuned["scenarios"].get("soak_png"))
    if growth:
        out += [
            f"RSS {fmt(growth['start_mb'])} MB → {fmt(growth['end_mb'])} MB over "
            f"{fmt(growth['minutes'] * 60)} s (**{growth['growth_percent']:+.1f}%**, peak "
            f"{fmt(growth['peak_mb'])} MB).",
            "",
            soak_table(tuned),
            "",
        ]
    cold_rows = []
    for server in [*ours(results), *peers, results.get("baseline"), results.get("http_only")]:
        if server:
            name = server_name(server) if server["label"] != "http_only" else "trivial model"
            runs = ", ".join(fmt(c) for c in server["cold_start_s"])
            cold_rows.append([name, runs, fmt(_cold(server))])
    out += [
        "## Cold start",
        "",
        "Process start (`Popen`) to the first ready answer, polled every 10 ms.",
        "",
        markdown_table(["server", "runs (s)", "median (s)"], cold_rows, align="lr"),
        "",
    ]
    if results.get("sweep"):
        out += [
            "## Workers, threads and batching",
            "",
            f"The real model behind `product-classifier serve` with each setting "
            f"({fmt(o['sweep_s'])} s per hey run).",
            "",
            sweep_table(results),
            "",
        ]
    return "\n".join(out)


def write_outputs(
    results: Results,
    out_dir: Path,
    docs: Path | None,
    img_dir: Path,
    evidence: Path | None = None,
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out_dir / f"loadtest-{stamp}.json"
    text = json.dumps(results, indent=1, default=str)
    json_path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    written = {"json": json_path}
    lean = _lean(results)
    if evidence is not None:
        evidence.parent.mkdir(parents=True, exist_ok=True)
        evidence.write_text(json.dumps(lean, indent=1, default=str) + "\n")
        written["evidence"] = evidence
    plot = plot_soak(results, img_dir / "soak-rss.png")
    if plot is not None:
        written["plot"] = plot
    if docs is not None:
        rel = _relative(plot, docs) if plot is not None else None
        ev = _relative(evidence, docs) if evidence is not None else None
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(render_markdown(lean, rel, ev))
        written["docs"] = docs
    return written


def _relative(path: Path, docs: Path) -> str:
    try:
        return str(path.resolve().relative_to(docs.resolve().parent))
    except ValueError:
        return str(path)


_HEY_PATH = re.compile(r"^\S*/hey ")
_TEMP_RUN_DIR = re.compile(re.escape(tempfile.gettempdir()) + r"/loadtest-[^/\s]+/")


def _lean(value: Any) -> Any:
    """The results without hey's raw text (its figures are parsed into ``stats``) and without
    this machine's paths (the checkout becomes ``.``, the run's temporary folder goes): small
    enough to commit, everything the report uses."""
    if isinstance(value, dict):
        return {k: _lean(v) for k, v in value.items() if k != "raw"}
    if isinstance(value, list):
        return [_lean(v) for v in value]
    if isinstance(value, str):
        value = _HEY_PATH.sub("hey ", value.replace(str(REPO_ROOT), "."))
        return _TEMP_RUN_DIR.sub("", value)
    return value

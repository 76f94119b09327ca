"""Load-test results -> JSON (reports/performance/) and Markdown (docs/performance.md).

Every figure of the tuned service is also given as a ratio to the naive baseline measured in the
same run (``x base``: tuned / baseline, so >1 is better for throughput, <1 for latency, CPU and
memory). The analysis paragraphs are generated from the numbers, so a rerun updates them too.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _png_saturation(server: Results | None) -> tuple[str, str]:
    """(scenario, step) that holds the 64-connection PNG figure: hey if it ran, else Locust."""
    if server and "hey_png" in server["scenarios"]:
        return "hey_png", "hey"
    return "ramp_png", "Locust"


def _cold(server: Results | None) -> float | None:
    if not server or not server.get("cold_start_s"):
        return None
    return float(statistics.median(server["cold_start_s"]))


@dataclass(frozen=True)
class Check:
    name: str
    unit: str
    limit: float
    higher_is_better: bool
    get: Callable[[Results | None], float | None]
    comparable: bool = True  # False: a ratio to the baseline means nothing (counts, deltas)

    def met(self, value: float | None) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value >= self.limit if self.higher_is_better else value <= self.limit


def _png(key: str) -> Callable[[Results | None], float | None]:
    return lambda s: _stat(s, _png_saturation(s)[0], key)


def _soak(s: Results | None) -> float | None:
    growth = soak_growth(s["scenarios"].get("soak_png") if s else None)
    return growth["growth_percent"] if growth else None


CHECKS = (
    Check("100 req/s: p95 latency", "ms", 25, False, lambda s: _stat(s, "steady_png", "p95_ms")),
    Check("100 req/s: mean latency", "ms", 10, False, lambda s: _stat(s, "steady_png", "mean_ms")),
    Check(
        "100 req/s: errors",
        "",
        0,
        False,
        lambda s: _stat(s, "steady_png", "errors"),
        comparable=False,
    ),
    Check(
        "100 req/s: rate achieved",
        "req/s",
        99,
        True,
        lambda s: _stat(s, "steady_png", "rps"),
    ),
    Check(
        "100 req/s: server CPU, % of machine",
        "%",
        20,
        False,
        lambda s: _stat(s, "steady_png", "cpu_percent_machine"),
    ),
    Check("28x28 PNG, 64 connections: throughput", "req/s", 2000, True, _png("rps")),
    Check("28x28 PNG, 64 connections: p95 latency", "ms", 50, False, _png("p95_ms")),
    Check(
        "600x600 JPEG: throughput", "req/s", 150, True, lambda s: _stat(s, "saturation_jpeg", "rps")
    ),
    Check(
        "batch endpoint: images/s", "img/s", 5000, True, lambda s: _stat(s, "batch", "images_per_s")
    ),
    Check("peak RSS, all processes", "MB", 300, False, lambda s: s["peak_rss_mb"] if s else None),
    Check(
        "peak PSS, all processes (shared pages split)",
        "MB",
        300,
        False,
        lambda s: s.get("peak_pss_mb") if s else None,
    ),
    Check("soak: RSS growth", "%", 5, False, _soak, comparable=False),
    Check("cold start to /ready (median)", "s", 2, False, _cold),
)


# -- formatting -----------------------------------------------------------------------------------


def fmt(value: float | None, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def ratio(tuned: float | None, base: float | None) -> str:
    if tuned is None or base is None or base == 0 or math.isnan(tuned) or math.isnan(base):
        return "–"
    return f"{tuned / base:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_SCENARIO_TITLES = {
    "steady_png": "28x28 PNG at a constant 100 req/s",
    "ramp_png": "28x28 PNG, closed loop, ramp (last step)",
    "hey_png": "28x28 PNG, hey, 64 connections",
    "hey_png_hard": "28x28 PNG the first stage is unsure of (always escalated), hey, 64 conn.",
    "saturation_png": "28x28 PNG, closed loop, 64 connections",
    "saturation_jpeg": "600x600 JPEG, closed loop",
    "batch": "batch endpoint, closed loop",
    "mix": "mix 70% PNG / 20% JPEG / 10% batch",
    "soak_png": "soak: 28x28 PNG at 100 req/s",
}

_METRICS = (
    ("req/s", "rps", True),
    ("img/s", "images_per_s", True),
    ("mean ms", "mean_ms", False),
    ("p50 ms", "p50_ms", False),
    ("p95 ms", "p95_ms", False),
    ("p99 ms", "p99_ms", False),
    ("errors %", "error_rate", False),
    ("CPU % machine", "cpu_percent_machine", False),
    ("peak RSS MB", "peak_rss_mb", False),
    ("peak PSS MB", "peak_pss_mb", False),
)


def _value(server: Results | None, scenario: str, key: str) -> float | None:
    value = _stat(server, scenario, key)
    return value * 100.0 if key == "error_rate" and value is not None else value


def scenario_table(tuned: Results, base: Results | None) -> str:
    header = ["scenario", "server", *[m[0] for m in _METRICS]]
    rows = []
    for name, title in _SCENARIO_TITLES.items():
        if name not in tuned["scenarios"]:
            continue
        sc = tuned["scenarios"][name]
        users = sc["steps"][-1]["users"] if sc.get("steps") else None
        label = f"{title}" + (f" ({users} users)" if users and name != "steady_png" else "")
        rows.append([label, "tuned", *[fmt(_value(tuned, name, key)) for _, key, _ in _METRICS]])
        if base and name in base["scenarios"]:
            rows.append(["", "baseline", *[fmt(_value(base, name, key)) for _, key, _ in _METRICS]])
            rows.append(
                [
                    "",
                    "× base",
                    *[
                        ratio(_value(tuned, name, key), _value(base, name, key))
                        for _, key, _ in _METRICS
                    ],
                ]
            )
    return _table(header, rows)


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
    return _table([*header, "CPU % machine", "peak RSS MB"], rows)


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
                f"{t0 / 60:.1f}–{t1 / 60:.1f}",
                fmt(bucket["rps"]),
                fmt(bucket.get("mean_ms")),
                fmt(bucket.get("p95_ms")),
                fmt(bucket.get("p99_ms")),
                str(bucket["errors"]),
                fmt(max(rss) if rss else None),
            ]
        )
    header = ["minutes", "req/s", "mean ms", "p95 ms", "p99 ms", "errors", "RSS MB (max)"]
    return _table(header, rows)


def plot_soak(results: Results, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    plotted = False
    for key, style in (("tuned", "-"), ("baseline", "--")):
        server = results.get(key)
        soak = server["scenarios"].get("soak_png") if server else None
        if not soak or not soak.get("rss_series"):
            continue
        t = [x / 60.0 for x, _ in soak["rss_series"]]
        mb = [y for _, y in soak["rss_series"]]
        growth = soak_growth(soak)
        suffix = f" ({growth['growth_percent']:+.1f}%)" if growth else ""
        ax.plot(t, mb, style, label=f"{key}{suffix}")
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("minutes into the soak (28x28 PNG at 100 req/s)")
    ax.set_ylabel("RSS, all server processes (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Server memory during the soak")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# -- analysis -------------------------------------------------------------------------------------


def _best(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    candidates = [r for r in rows if pred(r)]
    return max(candidates, key=lambda r: r["images_per_s"]) if candidates else {}


def cascade_cost(results: Results) -> dict[str, Any] | None:
    """CPU-ms per image of the served cascade: first stage + escalated share x second stage,
    from this run's inference-only rows and the card's test-set escalation rate."""
    cascade = results.get("cascade")
    rows = results.get("inference_only", [])
    if not cascade or not rows:
        return None

    def best(name: str) -> dict[str, Any]:
        return _best([r for r in rows if Path(r.get("model", "")).name == name], lambda r: True)

    first, second = best(cascade["first"]), best(cascade["second"])
    if not first or not second:
        return None
    share = float(cascade["escalated_test"])
    ms = first["cpu_ms_per_image"] + share * second["cpu_ms_per_image"]
    return {"first": first, "second": second, "share": share, "cpu_ms_per_image": ms}


def bottleneck_text(results: Results) -> str:
    all_rows = results.get("inference_only", [])
    tuned, http = results.get("tuned"), results.get("http_only")
    main_model = tuned.get("model") if tuned else None
    inference = [r for r in all_rows if r.get("model", main_model) == main_model]
    lines = []
    if all_rows:
        table_rows = [
            [
                Path(r.get("model", "")).name,
                str(r["batch"]),
                str(r.get("processes", 1)),
                str(r["threads"]),
                fmt(r["images_per_s"]),
                fmt(r["ms_per_call"]),
                fmt(r["cpu_ms_per_image"]),
            ]
            for r in all_rows
        ]
        header = ["model", "batch", "processes", "threads each", "images/s", "ms per call"]
        lines += [_table([*header, "CPU ms/image"], table_rows), ""]
    ceiling = _best(inference, lambda r: True)
    png_scenario, _ = _png_saturation(http)
    http_rps = _stat(http, png_scenario, "rps")
    tuned_rps = _stat(tuned, _png_saturation(tuned)[0], "rps")
    cost = cascade_cost(results)
    if cost:
        cores = results["machine"].get("cpu_count") or 1
        lines.append(
            f"* **The cascade** (inference/cascade.py): the first stage "
            f"({results['cascade']['first']}) costs {fmt(cost['first']['cpu_ms_per_image'])} "
            f"CPU-ms per image at its best batch, the released model "
            f"({results['cascade']['second']}) {fmt(cost['second']['cpu_ms_per_image'])}. With "
            f"{fmt(100 * cost['share'], 1)}% of the test images escalated (threshold "
            f"{results['cascade']['threshold']}), an image costs ~"
            f"{fmt(cost['cpu_ms_per_image'])} CPU-ms, so {cores} busy cores could classify "
            f"~{fmt(1000 * cores / cost['cpu_ms_per_image'])} images/s (the released model "
            f"alone: ~{fmt(1000 * cores / cost['second']['cpu_ms_per_image'])})."
        )
    if ceiling and http_rps:
        lines.append(
            f"* **HTTP ceiling**: the same service on a trivial model (one Gemm) answers "
            f"**{fmt(http_rps)} req/s** over 64 connections; the served model reaches "
            f"{fmt(tuned_rps)} req/s ({fmt(100.0 * (tuned_rps or 0) / http_rps, 0)}% of it)."
        )
    steady_cpu = _stat(tuned, "steady_png", "cpu_percent_machine")
    http_cpu = _stat(http, "steady_png", "cpu_percent_machine")
    if steady_cpu is not None and http_cpu is not None:
        lines.append(
            f"* **CPU at 100 req/s**: {fmt(steady_cpu)}% of the machine with the real model, "
            f"{fmt(http_cpu)}% with the trivial model: HTTP + decoding cost "
            f"{fmt(http_cpu)} points, the model the other {fmt(steady_cpu - http_cpu)}."
        )
    per_image = cost["cpu_ms_per_image"] if cost else ceiling.get("cpu_ms_per_image")
    lines += _out_of_reach(results, per_image, http_rps, tuned_rps)
    return "\n".join(lines)


def _out_of_reach(
    results: Results, per_image: float | None, http_rps: float | None, tuned_rps: float | None
) -> list[str]:
    """What bounds each throughput target on this machine, from this run's numbers."""
    tuned, http = results.get("tuned"), results.get("http_only")
    cores = results["machine"].get("cpu_count") or 1
    lines = []
    scenario = _png_saturation(http)[0]
    http_cpu = _stat(http, scenario, "cpu_percent_machine")
    if per_image and http_rps and http_cpu:
        # CPU-ms the trivial-model server spent per request at saturation: HTTP + decoding.
        http_ms = http_cpu / 100.0 * cores * 1000.0 / http_rps
        bound = 1000.0 * cores / (per_image + http_ms)
        lines.append(
            f"* **2,000 req/s of 28x28 PNGs**: a request costs ~{fmt(per_image)} CPU-ms of "
            f"model (batched) plus {fmt(http_ms)} CPU-ms of HTTP, multipart and decoding (the "
            f"trivial-model server at saturation), so {cores} fully busy cores serve at most "
            f"~{fmt(bound)} req/s, before the load generator on the same cores takes its share; "
            f"measured: {fmt(tuned_rps)} req/s."
        )
    if tuned_rps:
        connections = results["options"]["hey_connections"]
        lines.append(
            f"* **p95 <= 50 ms over {connections} connections**: by Little's law "
            f"{connections} connections at {fmt(tuned_rps)} req/s wait "
            f"{fmt(1000 * connections / tuned_rps)} ms on average, so a 50 ms p95 needs well "
            f"over {fmt(connections / 0.05)} req/s."
        )
    batch = _stat(tuned, "batch", "images_per_s")
    if per_image and batch is not None:
        limit = 1000.0 * cores / per_image
        lines.append(
            f"* **5,000 images/s on the batch endpoint**: at ~{fmt(per_image)} CPU-ms per image "
            f"the model alone can do at most ~{fmt(limit)} images/s on {cores} fully busy "
            f"cores, before decoding and HTTP; the endpoint reached {fmt(batch)}."
        )
    return lines


def extra_models_table(results: Results) -> str:
    """Other models (e.g. FP32 next to INT8) on the same tuned service, short plan."""
    base = results.get("baseline")
    columns = (
        ("100 req/s mean ms", "steady_png", "mean_ms"),
        ("100 req/s p95 ms", "steady_png", "p95_ms"),
        ("100 req/s CPU %", "steady_png", "cpu_percent_machine"),
        ("PNG x64 req/s", "hey_png", "rps"),
        ("PNG x64 p95 ms", "hey_png", "p95_ms"),
        ("JPEG req/s", "saturation_jpeg", "rps"),
        ("batch img/s", "batch", "images_per_s"),
    )
    rows = []
    servers = [results.get("tuned"), *results.get("extra_models", [])]
    for server in servers:
        if not server:
            continue
        name = Path(server.get("model", "")).name
        if server.get("variant"):
            name = f"{name} ({server['variant']})"
        values = [_stat(server, sc, key) for _, sc, key in columns]
        rows.append([name, *[fmt(v) for v in values], fmt(server["peak_rss_mb"])])
        rows.append(
            [
                "× base",
                *[
                    ratio(v, _stat(base, sc, key))
                    for v, (_, sc, key) in zip(values, columns, strict=True)
                ],
                ratio(server["peak_rss_mb"], base["peak_rss_mb"] if base else None),
            ]
        )
    return (
        _table(["model", *[c[0] for c in columns], "peak RSS MB"], rows) if len(servers) > 1 else ""
    )


def sweep_table(results: Results) -> str:
    rows = []
    for entry in results.get("sweep", []):
        sc = entry["scenarios"]

        def get(name: str, key: str, sc: dict[str, Any] = sc) -> float | None:
            if name not in sc:
                return None
            return sc[name]["stats"].get(key, sc[name].get("resources", {}).get(key))

        rows.append(
            [
                entry["label"],
                fmt(get("steady_png", "mean_ms")),
                fmt(get("steady_png", "p95_ms")),
                fmt(sc.get("steady_png", {}).get("resources", {}).get("cpu_percent_machine")),
                fmt(get("hey_png", "rps")),
                fmt(get("hey_png", "p95_ms")),
                fmt(get("saturation_jpeg", "rps")),
                fmt(entry["peak_rss_mb"]),
                fmt(entry.get("peak_pss_mb")),
            ]
        )
    header = ["settings", "100 rps mean ms", "100 rps p95 ms", "100 rps CPU %"]
    header += ["PNG x64 req/s (hey)", "PNG x64 p95 ms", "JPEG req/s", "peak RSS MB", "peak PSS MB"]
    return _table(header, rows) if rows else ""


# -- the document ---------------------------------------------------------------------------------

# How the tuned server is set up and why; the live figures are in the tables around it. The
# profile shares come from py-spy on this machine (2 cores, trivial model, 1 worker, hey -c 32).
DESIGN_NOTES = """\
* **The model: a confidence cascade** (`inference/cascade.py`, built by `product-classifier
  cascade`). The released ResNet-20 (width 32) costs ~0.7 CPU-ms per image even in INT8, which
  alone caps two cores near 2,700 images/s before any HTTP. Its distilled width-16 student
  costs ~0.25 ms; it answers every image, and only the ~5% it is unsure of (top probability
  below the threshold chosen on validation data) go through the released model. Same test
  accuracy as the released INT8 model (docs/model_card.md), ~2.5x less model CPU. The worst
  case (every image escalated, the `hey_png_hard` row) is slower than the released model
  alone, by the first stage's cost.
* **One thread hop per request, nothing CPU-heavy on the event loop.** The upload's bytes go
  straight into the `MicroBatcher` queue; its worker thread decodes and preprocesses each item
  (`preprocess_upload`), runs the model once for the batch and resolves the futures. A
  separate decode pool used to cost a second hop per request.
* **A lean path for `POST /v1/predict` and `/v1/predict/batch`** (`serving/fast_predict.py`):
  a pure-ASGI handler slices the file parts out of the body with `bytes.find` and answers with
  orjson, skipping FastAPI's routing, dependency injection, python-multipart and
  `UploadFile`. It sits inside every other middleware (limits, API keys, CORS, request id,
  metrics, access log). Anything unusual is replayed to the FastAPI route, which stays the one
  definition of the contract and its errors; a Hypothesis test checks the two parsers agree.
* **One worker per core** (`workers` 0 = auto, at most 4). A worker's Python side (HTTP,
  multipart, decoding) holds the GIL: one worker tops out near 2,000 small requests/s with a
  core to spare. `product-classifier serve` validates, loads the model once to fail fast, then
  `exec`s a small entry point (`serving/run.py`), so the supervisor and the spawned workers
  skip the CLI's imports (295 -> ~280 MB for the whole tree with 2 workers).
* **Few connections, two workers**: uvicorn's workers share one listening socket, and the
  first to wake accepts every pending connection. With many clients that evens out (hey's 64
  connections kept both workers busy); with 4 batch clients we saw all 4 land on one worker in
  2 of 3 tries (~1,800 images/s instead of ~4,200). Per-worker `SO_REUSEPORT` sockets would
  spread them; uvicorn has no option for it yet.
* **Micro-batching**: `max_batch_size` 32 (64 was less steady at 64 connections and ~20 MB
  larger), `max_wait_ms` 2. Waiting items are shared among the free model slots, so one big
  batch never leaves a core idle.
* **Bounded queue**: `queue_size` 1024 images; when full, `503 overloaded` with `Retry-After`
  at once (`test_overload_answers_503_with_retry_after` in tests/integration/test_api_errors.py).
* **Per-request overhead removed** (py-spy and cProfile on this machine): FastAPI's native
  OpenTelemetry layer (off unless `opentelemetry=true`; it read three environment variables
  per request), `uuid4` request ids (a random per-process prefix and a counter now),
  `asyncio.wait_for` in the body deadline (a task per read; `asyncio.timeout_at` now), the
  logging module's stack walk per record (`logging._srcfile` off while serving), `json.dumps`
  (orjson for responses and log lines), a copy in `ImageOps.exif_transpose`, `np.median` on 108
  border pixels.
* **Catalog JPEGs**: a full-size decode of a 600x600 JPEG costs ~3.5 ms of the ~5 ms a JPEG
  request needs; `Image.draft("L", ...)` makes libjpeg decode at 1/4 scale in ~0.8 ms. That
  change belongs in `preprocessing.py` and moves pixels slightly, so it needs the accuracy
  check rerun; not done here.
"""


def targets_table(results: Results) -> str:
    tuned, base, http = results["tuned"], results.get("baseline"), results.get("http_only")
    rows = []
    for check in CHECKS:
        value, base_value = check.get(tuned), check.get(base)
        met = check.met(value)
        op = "≥" if check.higher_is_better else "≤"
        http_value = check.get(http) if http else None
        rows.append(
            [
                check.name,
                f"{op} {check.limit:,g} {check.unit}".strip(),
                fmt(value),
                fmt(base_value),
                ratio(value, base_value) if check.comparable else "–",
                fmt(http_value) if http_value is not None else "–",
                {True: "**met**", False: "not met", None: "–"}[met],
            ]
        )
    header = ["target", "limit", "tuned", "baseline", "× base", "trivial model", "status"]
    return _table(header, rows)


def render_markdown(results: Results, soak_png: str | None) -> str:
    tuned, base = results["tuned"], results.get("baseline")
    machine = results["machine"]
    la0, la1 = results["loadavg_start"], results["loadavg_end"]
    # Only the start says whether others used the machine: the end is this run's own load.
    busy = la0[0] > 0.5 * (machine["cpu_count"] or 1)
    o = results["options"]
    png_src = _png_saturation(tuned)[1]
    out = [
        "# Performance of the HTTP API",
        "",
        "Generated by `make loadtest` (`product-classifier benchmark load`) on "
        f"{results['started']}; raw figures in `reports/performance/*.json`. Do not edit by hand: "
        "rerun instead.",
        "",
        f"* Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GB; Python {machine['python']}, onnxruntime "
        f"{machine['onnxruntime']}. The load generators (Locust, hey) run on the same machine.",
        f"* Load average (1/5/15 min) at start {', '.join(fmt(x, 2) for x in la0)}, at end "
        f"{', '.join(fmt(x, 2) for x in la1)} (the end is this run's own load: the last server "
        "measured)."
        + (
            " **The machine was busy with other work: latencies and throughputs below are "
            "pessimistic; rerun `make loadtest` on a quiet machine.**"
            if busy
            else ""
        ),
        f"* Tuned server: {tuned['description']}. Baseline: "
        + (base["description"] if base else "not measured (no checkpoint)")
        + ". Trivial model: the tuned service on a one-Gemm ONNX model (isolates HTTP cost).",
        f"* Durations: constant rate {fmt(o['steady_s'])} s, ramp steps {fmt(o['ramp_step_s'])} s, "
        f"saturation {fmt(o['saturation_s'])} s, hey {fmt(o['hey_s'])} s, soak "
        f"{fmt(o['soak_s'] / 60, 1)} min; whole run {fmt(results['wall_s'] / 60, 1)} min."
        + (" **Smoke run: figures are meaningless.**" if results["smoke"] else ""),
        "",
        "## Targets",
        "",
        f"The 64-connection PNG rows come from {png_src}. `× base` = tuned / baseline.",
        "",
        targets_table(results),
        "",
        "## Where the time goes",
        "",
        bottleneck_text(results),
        "",
        "## How the tuned server is set up",
        "",
        DESIGN_NOTES,
        "## Scenarios",
        "",
        "Latency is client-side (request sent to response read). CPU is the server's whole "
        "process tree as a share of all cores (100% = every core busy); RSS is summed over its "
        "processes (RSS counts shared library pages once per process; PSS splits them).",
        "",
        scenario_table(tuned, base),
        "",
        "### Ramp to saturation (28x28 PNG, closed loop, tuned server)",
        "",
        ramp_table(tuned),
        "",
    ]
    if "hey_png" in tuned["scenarios"]:
        out += [
            "### hey (the acceptance check)",
            "",
            "```",
            tuned["scenarios"]["hey_png"]["command"],
            "```",
            "",
        ]
    out += ["## Soak", ""]
    if soak_png:
        out += [f"![RSS during the soak]({soak_png})", ""]
    growth = soak_growth(tuned["scenarios"].get("soak_png"))
    if growth:
        base_growth = soak_growth(base["scenarios"].get("soak_png")) if base else None
        out += [
            f"Tuned: RSS {fmt(growth['start_mb'])} MB → {fmt(growth['end_mb'])} MB over "
            f"{fmt(growth['minutes'], 1)} min (**{growth['growth_percent']:+.1f}%**, peak "
            f"{fmt(growth['peak_mb'])} MB)"
            + (
                f"; baseline {fmt(base_growth['start_mb'])} → {fmt(base_growth['end_mb'])} MB "
                f"({base_growth['growth_percent']:+.1f}%)."
                if base_growth
                else "."
            ),
            "",
            soak_table(tuned),
            "",
        ]
    cold_rows = []
    for key in ("tuned", "baseline", "http_only"):
        server = results.get(key)
        if server:
            cold_rows.append(
                [key, ", ".join(fmt(c) for c in server["cold_start_s"]), fmt(_cold(server))]
            )
    out += [
        "## Cold start",
        "",
        "Process start (`Popen`) to the first `GET /ready` = 200, polled every 10 ms.",
        "",
        _table(["server", "runs (s)", "median (s)"], cold_rows),
        "",
    ]
    extra = extra_models_table(results)
    if extra:
        out += [
            "## Other model variants on the same service",
            "",
            "The same settings serving another variant of the released files, e.g. the INT8 "
            "model alone without the cascade (shorter plan: constant rate "
            f"{fmt(min(o['steady_s'], 30.0))} s, hey, JPEG and batch).",
            "",
            extra,
            "",
        ]
    sweep = sweep_table(results)
    if sweep:
        out += [
            "## Choosing workers, threads and batching",
            "",
            "Each row is the real model behind `product-classifier serve` with those settings "
            f"({fmt(o['sweep_s'])} s per scenario; PNG x64 = hey with 64 connections; JPEG = "
            f"{o['jpeg_users']} closed-loop Locust users).",
            "",
            sweep,
            "",
        ]
    return "\n".join(out)


def write_outputs(
    results: Results, out_dir: Path, docs: Path | None, img_dir: Path
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out_dir / f"loadtest-{stamp}.json"
    text = json.dumps(results, indent=1, default=str)
    json_path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    written = {"json": json_path}
    plot = plot_soak(results, img_dir / "soak-rss.png")
    if plot is not None:
        written["plot"] = plot
    if docs is not None:
        rel = None
        if plot is not None:
            try:
                rel = str(plot.resolve().relative_to(docs.resolve().parent))
            except ValueError:
                rel = str(plot.resolve())
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(render_markdown(results, rel))
        written["docs"] = docs
    return written

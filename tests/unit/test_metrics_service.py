"""serving/metrics.py and the multiprocess helpers, without an app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from product_classifier.resources import available_cpus
from product_classifier.serving import observability_multiprocess as mp
from product_classifier.serving.metrics import (
    HTTP_BUCKETS,
    ProcessCollector,
    ServiceMetrics,
)
from product_classifier.serving.observability import MetricsAccess


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_sla_thresholds_are_bucket_boundaries() -> None:
    # histogram_quantile is exact only at bucket edges: the alert thresholds must be edges.
    assert 0.2 in HTTP_BUCKETS and 0.3 in HTTP_BUCKETS


def test_requests_are_counted_and_timed_per_route_and_status() -> None:
    metrics = ServiceMetrics()
    for _ in range(3):
        metrics.observe_request("POST", "/v1/predict", 200, 0.25)
    metrics.observe_request("POST", "/v1/predict", 415, 0.01)
    route = {"method": "POST", "route": "/v1/predict"}
    assert value(metrics, "http_requests_total", **route, status="200") == 3
    assert value(metrics, "http_requests_total", **route, status="415") == 1
    assert value(metrics, "http_request_duration_seconds_count", **route) == 4
    assert value(metrics, "http_request_duration_seconds_sum", **route) == pytest.approx(0.76)
    # 0.25 s is above the 0.2 bucket and within the 0.3 one.
    assert value(metrics, "http_request_duration_seconds_bucket", **route, le="0.2") == 1
    assert value(metrics, "http_request_duration_seconds_bucket", **route, le="0.3") == 4


def test_predictions_batches_and_model_info() -> None:
    metrics = ServiceMetrics()
    metrics.set_model("v7", "ab" * 32, ["Bag", "Shirt"])
    # Every category exists at 0 before the first prediction (ratios have no gaps).
    assert value(metrics, "predictions_total", category="Shirt") == 0
    assert value(metrics, "needs_review_total", category="Bag") == 0
    metrics.observe_prediction("Bag", 0.99, False)
    metrics.observe_prediction("Bag", 0.55, True)
    metrics.observe_prediction("Unexpected", 0.4, True)  # still counted, created on the fly
    metrics.observe_batch(8, 0.004)
    assert value(metrics, "predictions_total", category="Bag") == 2
    assert value(metrics, "needs_review_total", category="Bag") == 1
    assert value(metrics, "needs_review_total", category="Unexpected") == 1
    assert value(metrics, "prediction_confidence_bucket", category="Bag", le="0.6") == 1
    assert value(metrics, "inference_batch_size_sum") == 8
    assert value(metrics, "inference_duration_seconds_count") == 1
    assert value(metrics, "model_info", model_version="v7", sha256="ab" * 32) == 1
    metrics.set_ready(True)
    assert value(metrics, "service_ready") == 1
    metrics.worker_exit()
    assert value(metrics, "service_ready") == 0


def test_no_created_series_and_own_process_metrics() -> None:
    metrics = ServiceMetrics()
    metrics.observe_request("GET", "/health", 200, 0.001)
    names = {name for name, _ in samples(metrics)}
    assert not any(name.endswith("_created") for name in names)
    pid = str(os.getpid())
    assert value(metrics, "process_resident_memory_bytes", pid=pid) > 10_000_000  # type: ignore[operator]
    assert value(metrics, "process_cpu_seconds_total", pid=pid) > 0  # type: ignore[operator]
    assert value(metrics, "service_cpu_cores") == available_cpus()


def test_process_collector_reports_other_processes_and_skips_dead_ones() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        collector = ProcessCollector(lambda: (os.getpid(), child.pid, dead.pid))
        families = {family.name: family for family in collector.collect()}
        rss_pids = {s.labels["pid"] for s in families["process_resident_memory_bytes"].samples}
        assert rss_pids == {str(os.getpid()), str(child.pid)}
        starts = {s.labels["pid"]: s.value for s in families["process_start_time_seconds"].samples}
        assert starts[str(child.pid)] >= starts[str(os.getpid())]
    finally:
        child.kill()
        child.wait()


# -- /metrics access ------------------------------------------------------------------------------


def _scope(host: str | None, auth: bytes | None = None) -> dict[str, object]:
    headers = [(b"authorization", auth)] if auth is not None else []
    return {"client": (host, 1234) if host else None, "headers": headers}


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped on a dual-stack socket
        # Private ranges are no proof of an insider (a proxy or an address-rewriting load
        # balancer is private too): a deployment names its scraper's network.
        ("10.1.2.3", False),
        ("172.20.0.5", False),
        ("192.168.1.1", False),
        ("8.8.8.8", False),
        ("172.32.0.1", False),
        ("testclient", False),  # not an address: refused, not a crash
        (None, False),
    ],
)
def test_default_networks(host: str | None, allowed: bool) -> None:
    from product_classifier.serving.settings import ServeSettings

    access = MetricsAccess(ServeSettings().metrics_allowed_networks, None)
    denied = access.check(_scope(host))
    assert (denied is None) is allowed
    if not allowed:
        assert denied is not None and denied.status_code == 403


def test_empty_network_list_allows_anyone() -> None:
    assert MetricsAccess([], None).check(_scope("8.8.8.8")) is None


def test_bearer_token() -> None:
    access = MetricsAccess([], "s3cret")
    assert access.check(_scope("8.8.8.8", b"Bearer s3cret")) is None
    for wrong in (None, b"Bearer s3cre", b"Bearer s3cretX", b"s3cret", b"Basic s3cret"):
        denied = access.check(_scope("8.8.8.8", wrong))
        assert denied is not None and denied.status_code == 401
        assert denied.headers and "Bearer" in denied.headers["WWW-Authenticate"]


def test_network_is_checked_before_the_token() -> None:
    denied = MetricsAccess(["10.0.0.0/8"], "t").check(_scope("8.8.8.8", b"Bearer t"))
    assert denied is not None and denied.status_code == 403


# -- multiprocess directory -----------------------------------------------------------------------


def test_single_worker_needs_no_directory() -> None:
    env: dict[str, str] = {}
    assert mp.prepare_multiprocess_dir(1, environ=env) is None
    assert env == {}


def test_several_workers_get_a_fresh_directory() -> None:
    env: dict[str, str] = {}
    path = mp.prepare_multiprocess_dir(4, environ=env)
    assert path is not None and path.is_dir() and not any(path.iterdir())
    assert env[mp.MULTIPROC_ENV] == str(path)
    assert mp.prepare_multiprocess_dir(4, enabled=False, environ={}) is None


def test_operator_directory_gets_a_fresh_subdirectory_and_keeps_its_files(
    tmp_path: Path,
) -> None:
    """Nothing the service did not create is deleted: the operator's directory may hold
    another service's live metrics (prometheus_client's *.db names say nothing of whose)."""
    parent = tmp_path / "metrics"
    env = {mp.MULTIPROC_ENV: str(parent)}
    first = mp.prepare_multiprocess_dir(1, environ=env)
    assert first is not None and first.parent == parent and parent.is_dir()
    assert env[mp.MULTIPROC_ENV] == str(first)  # the workers write to the run's own dir
    assert (first.stat().st_mode & 0o777) == 0o700
    foreign = {"counter_123.db": b"another service", "keep.txt": b"not ours"}
    for name, data in foreign.items():
        (parent / name).write_bytes(data)
    (parent / "product-classifier-other").mkdir()  # our prefix, but no owner file: kept
    second = mp.prepare_multiprocess_dir(2, environ={mp.MULTIPROC_ENV: str(parent)})
    assert (
        second is not None
        and second != first
        and not any(p.suffix == ".db" for p in second.iterdir())
    )
    assert {name: (parent / name).read_bytes() for name in foreign} == foreign
    assert (parent / "product-classifier-other").is_dir()
    assert first.is_dir()  # this process, its owner, is alive


def test_a_killed_runs_directory_is_removed_at_the_next_start(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f"{mp.RUN_DIR_PREFIX}{dead.pid}-x"
    leftover.mkdir()
    (leftover / mp.OWNER_FILE).write_text(f"{dead.pid}\n")
    (leftover / f"counter_{dead.pid}.db").write_bytes(b"stale")
    path = mp.prepare_multiprocess_dir(2, environ={mp.MULTIPROC_ENV: str(tmp_path)})
    assert path is not None and path.is_dir()
    assert not leftover.exists()


def test_an_unusable_operator_directory_fails_with_its_name(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a directory")
    with pytest.raises(OSError, match=f"{mp.MULTIPROC_ENV}=.*file.*writable directory"):
        mp.prepare_multiprocess_dir(2, environ={mp.MULTIPROC_ENV: str(blocked)})


def test_dead_workers_are_reaped(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = os.getpid()
    for name in (
        f"counter_{dead.pid}.db",
        f"gauge_livemin_{dead.pid}.db",
        f"gauge_livesum_{me}.db",
        f"histogram_{me}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert mp.pids_with_files(tmp_path) == {dead.pid, me}
    assert mp.reap_dead_workers(tmp_path) == [dead.pid]
    # The dead worker's counters stay (totals must not go down); its live gauges go.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead.pid}.db", f"gauge_livesum_{me}.db", f"histogram_{me}.db"]
    )


def test_cascade_stage_counts_add_up_across_workers(tmp_path: Path) -> None:
    """cascade_images_total{stage} in multiprocess mode (several uvicorn workers): each worker
    writes its own file and a scrape reports the sum per stage."""
    code = (
        "import sys\n"
        "from product_classifier.serving.metrics import ServiceMetrics\n"
        "m = ServiceMetrics()\n"
        "if sys.argv[1] == 'work':\n"
        "    m.observe_cascade(3, 1)\n"
        "    m.observe_cascade(2, 0)\n"
        "else:\n"
        "    print(m.render().decode())\n"
    )
    env = {**os.environ, mp.MULTIPROC_ENV: str(tmp_path)}
    for _ in range(2):  # two workers
        subprocess.run([sys.executable, "-c", code, "work"], env=env, check=True, timeout=60)
    scrape = [sys.executable, "-c", code, "scrape"]
    done = subprocess.run(scrape, env=env, check=True, timeout=60, text=True, capture_output=True)
    assert 'cascade_images_total{stage="student"} 10.0' in done.stdout
    assert 'cascade_images_total{stage="full"} 2.0' in done.stdout


def test_the_stage_labels_are_the_cascades() -> None:
    from product_classifier.inference.cascade import STAGES
    from product_classifier.serving.metrics import CASCADE_STAGES

    assert CASCADE_STAGES == STAGES

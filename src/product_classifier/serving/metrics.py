"""Prometheus metrics of the service: what ``/metrics`` exports, and the cheap ways to update it.

Metric families (see docs/runbook.md for what an on-call engineer does with them):

* RED: ``http_requests_total{method,route,status}``, ``http_request_duration_seconds{method,
  route}`` (buckets at the SLA's 0.2 s and 0.3 s), ``http_requests_in_flight``;
* model: ``inference_duration_seconds`` and ``inference_batch_size`` (one observation per model
  call of the micro-batcher), ``inference_timeouts_total``, ``batcher_worker_restarts_total``,
  ``predictions_total{category}``, ``prediction_confidence{category}``,
  ``needs_review_total{category}``, ``model_info{model_version,sha256}``, ``service_ready``;
* cascade: ``cascade_images_total{stage}``, images answered by the first stage (``student``) or
  escalated to the released model (``full``); the escalated share is full / (student + full);
* resources: ``process_cpu_seconds_total{pid}``, ``process_resident_memory_bytes{pid}``,
  ``process_open_fds{pid}``, ``process_start_time_seconds{pid}`` for every live worker, and
  ``service_cpu_cores`` (cores this service may use: affinity or cgroup quota).

Labels are bounded: ``route`` is a route template (``"other"`` for unknown paths), ``method`` one
of a fixed set, ``category`` one of the model's classes. With several workers the values come
from prometheus_client's multiprocess files (see ``observability_multiprocess``); the default
process collector cannot work there, so :class:`ProcessCollector` reads ``/proc`` of each worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from product_classifier.resources import available_cpus
from product_classifier.serving import observability_multiprocess as mp

__all__ = ["CONTENT_TYPE_LATEST", "ProcessCollector", "ServiceMetrics"]

# Request latency: fine steps around the SLA (mean 0.2 s, p95 0.3 s) so that
# histogram_quantile interpolates within a narrow bucket exactly where alerts decide.
HTTP_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
UNKNOWN = "unknown"
# inference/cascade.py STAGES, in its hook's order (a copy: this module stays free of numpy).
CASCADE_STAGES = ("student", "full")


class ProcessCollector(Collector):
    """CPU, memory, fds and start time of each worker process, labelled by ``pid``.

    Reads ``/proc/<pid>/stat`` like prometheus_client's own collector, but for a list of pids,
    so the worker that answers the scrape reports its siblings too. Off Linux it reports
    nothing but ``service_cpu_cores``.
    """

    def __init__(self, pids: Callable[[], Iterable[int]], proc: str = "/proc") -> None:
        self._pids = pids
        self._proc = proc
        self._cores = available_cpus()
        try:
            self._ticks = float(os.sysconf("SC_CLK_TCK"))
            self._pagesize = os.sysconf("SC_PAGESIZE")
            self._btime = self._boot_time()
        except (OSError, ValueError, AttributeError):
            self._btime = None

    def _boot_time(self) -> float | None:
        try:
            with open(os.path.join(self._proc, "stat"), "rb") as fh:
                for line in fh:
                    if line.startswith(b"btime "):
                        return float(line.split()[1])
        except OSError:
            pass
        return None

    def collect(self) -> Iterator[Metric]:
        cores = GaugeMetricFamily(
            "service_cpu_cores", "CPU cores this service may use (affinity or cgroup quota)."
        )
        cores.add_metric([], self._cores)
        yield cores
        if self._btime is None:
            return
        cpu = CounterMetricFamily(
            "process_cpu_seconds", "User and system CPU time of a worker.", labels=["pid"]
        )
        rss = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of a worker.", labels=["pid"]
        )
        fds = GaugeMetricFamily("process_open_fds", "Open file descriptors.", labels=["pid"])
        start = GaugeMetricFamily(
            "process_start_time_seconds", "Worker start, seconds since epoch.", labels=["pid"]
        )
        for pid in sorted(self._pids()):
            base = os.path.join(self._proc, str(pid))
            try:
                with open(os.path.join(base, "stat"), "rb") as fh:
                    stat = fh.read()
                nfds = len(os.listdir(os.path.join(base, "fd")))
            except OSError:  # exited between listing and reading
                continue
            parts = stat[stat.rindex(b")") + 2 :].split()
            label = [str(pid)]
            cpu.add_metric(label, (float(parts[11]) + float(parts[12])) / self._ticks)
            rss.add_metric(label, float(parts[21]) * self._pagesize)
            fds.add_metric(label, float(nfds))
            start.add_metric(label, float(parts[19]) / self._ticks + self._btime)
        yield from (cpu, rss, fds, start)


class ServiceMetrics:
    """The service's metric objects plus the registry ``/metrics`` renders.

    Hot-path methods cache label children in dicts: ``.labels()`` costs a lock and a tuple
    build per call, a dict hit costs ~50 ns. Every method runs on the event loop.
    """

    def __init__(self) -> None:
        # Decided by prometheus_client at import from PROMETHEUS_MULTIPROC_DIR.
        self.multiprocess = values.ValueClass is not values.MutexValue
        self.multiprocess_dir = mp.multiprocess_dir() if self.multiprocess else None
        if self.multiprocess and self.multiprocess_dir is None:
            raise RuntimeError(
                f"prometheus_client is in multiprocess mode but {mp.MULTIPROC_ENV} is unset"
            )
        # *_created series double the output and multiprocess mode has none: same text either way.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being served.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inference_duration = Histogram(
            "inference_duration_seconds",
            "Duration of one model call (one micro-batch).",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "inference_batch_size",
            "Images per model call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.inference_timeouts = Counter(
            "inference_timeouts",
            "Images not answered within inference_timeout_s (answered 504).",
            registry=r,
        )
        self.batcher_restarts = Counter(
            "batcher_worker_restarts",
            "Times a worker's micro-batcher task died and was restarted.",
            registry=r,
        )
        self.predictions = Counter(
            "predictions", "Images classified, by top-1 category.", ["category"], registry=r
        )
        self.confidence = Histogram(
            "prediction_confidence",
            "Top-1 probability of each prediction.",
            ["category"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.needs_review = Counter(
            "needs_review",
            "Predictions below the review threshold (needs_review=true).",
            ["category"],
            registry=r,
        )
        self.cascade_images = Counter(
            "cascade_images",
            "Images the cascade classified, by the stage that answered: student (its first "
            "stage was sure) or full (escalated to the released model; inference/cascade.py).",
            ["stage"],
            registry=r,
        )
        # Children resolved once: the hook runs per model call (two series in all).
        self._stage_children = tuple(self.cascade_images.labels(stage) for stage in CASCADE_STAGES)
        self.model_info = Gauge(
            "model_info",
            "The model being served (value 1).",
            ["model_version", "sha256"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "service_ready",
            "1 when the model is loaded and requests are served (min over live workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._duration_children: dict[tuple[str, str], Histogram] = {}
        self._category_children: dict[str, tuple[Counter, Histogram, Counter]] = {}
        self._exposition = self._build_exposition()

    def _build_exposition(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            self.registry.register(ProcessCollector(lambda: (os.getpid(),)))
            return self.registry
        path = self.multiprocess_dir
        exposition = CollectorRegistry()
        MultiProcessCollector(exposition, path=str(path))
        exposition.register(ProcessCollector(lambda: self._live_pids(path)))
        return exposition

    @staticmethod
    def _live_pids(path: Path) -> list[int]:
        return [pid for pid in mp.pids_with_files(path) if mp.pid_alive(pid)]

    # -- hot path -------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(method, route, status)
        counter.inc()
        pair = (method, route)
        histogram = self._duration_children.get(pair)
        if histogram is None:
            histogram = self._duration_children[pair] = self.duration.labels(method, route)
        histogram.observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_duration.observe(seconds)

    def observe_timeouts(self, images: int) -> None:
        self.inference_timeouts.inc(images)

    def observe_batcher_death(self, error: BaseException | None) -> None:
        """The micro-batcher's worker died: count it; this worker is not ready until restarted."""
        self.batcher_restarts.inc()
        self.set_ready(False)

    def observe_cascade(self, student: int, full: int) -> None:
        """CascadePredictor hook, once per model call (in the batch's worker thread): how many
        images each stage answered."""
        if student:
            self._stage_children[0].inc(student)
        if full:
            self._stage_children[1].inc(full)

    def observe_prediction(self, category: str, confidence: float, needs_review: bool) -> None:
        children = self._category_children.get(category)
        if children is None:
            children = self._init_category(category)
        children[0].inc()
        children[1].observe(confidence)
        if needs_review:
            children[2].inc()

    # -- state ----------------------------------------------------------------------------------

    def _init_category(self, category: str) -> tuple[Counter, Histogram, Counter]:
        children = (
            self.predictions.labels(category),
            self.confidence.labels(category),
            self.needs_review.labels(category),
        )
        self._category_children[category] = children
        return children

    def set_model(self, model_version: str, sha256: str | None, categories: Sequence[str]) -> None:
        """Publish the model and create every category's series at 0 (no gaps in ratios)."""
        self.model_info.labels(model_version or UNKNOWN, sha256 or UNKNOWN).set(1)
        for category in categories:
            if category not in self._category_children:
                self._init_category(category)

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    # -- exposition -----------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition (blocking file reads in multiprocess mode: call off the loop)."""
        if self.multiprocess_dir is not None:
            mp.reap_dead_workers(self.multiprocess_dir)
        return generate_latest(self._exposition)

    def worker_exit(self) -> None:
        """A worker stops: its live gauges (ready, in-flight, model_info) must leave the sum."""
        self.set_ready(False)
        if self.multiprocess_dir is not None:
            mp.mark_process_dead(os.getpid(), self.multiprocess_dir)

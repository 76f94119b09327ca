"""The service under a REAL Prometheus and Alertmanager, all on 127.0.0.1.

One service (2 uvicorn workers, the tiny contract model) is scraped every second by Prometheus,
configured from monitoring/prometheus/prometheus.yml and the real rule files (the instance-down
alert's ``for`` shortened to 1 s). Alertmanager forwards to a webhook served by this test. We
check the target, the cross-worker totals and the recording rules, then stop the service and
wait for the alert to arrive at the webhook.

Needs the ``prometheus`` and ``alertmanager`` binaries (Debian: ``prometheus``,
``prometheus-alertmanager``, whose binary is ``prometheus-alertmanager``).
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import yaml
from live_server import LiveServer, free_port, launch, png_bytes, wait_ready
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "monitoring" / "prometheus"
JOB = "product-classifier"
PREDICTIONS = 20

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

T = TypeVar("T")


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        f"{' / '.join(names)} not installed (apt-get install prometheus prometheus-alertmanager)"
    )


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Process:
    """A monitoring daemon with its log in a file, stopped at the end."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def wait_ready_url(process: Process, url: str) -> None:
    def ready() -> bool | None:
        if process.proc.poll() is not None:
            raise AssertionError(f"{url} exited:\n{process.log()}")
        try:
            return True if httpx.get(url, timeout=1.0).status_code == 200 else None
        except httpx.TransportError:
            return None

    wait_for(ready, url, timeout=30)


class Webhook:
    """Alertmanager's receiver: a tiny HTTP server collecting the alerts it is sent."""

    def __init__(self) -> None:
        self.alerts: queue.Queue[dict[str, Any]] = queue.Queue()
        alerts = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                for alert in json.loads(body).get("alerts", []):
                    alerts.put(alert)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rules_for_this_test(tmp_path: Path) -> list[Path]:
    """The real rule files; only the instance-down alert waits 1 s instead of 1 minute, and
    every group is evaluated at the global (1 s) interval."""
    out = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        spec = yaml.safe_load(path.read_text())
        for group in spec["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if rule.get("alert") == "ProductClassifierInstanceDown":
                    rule["for"] = "1s"
        target = tmp_path / path.name
        target.write_text(yaml.safe_dump(spec, sort_keys=False))
        out.append(target)
    return out


def prometheus_config(rules: list[Path], service_port: int, alertmanager_port: int) -> dict:
    """monitoring/prometheus/prometheus.yml with local targets and 1 s intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(path) for path in rules]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager_port}"]}
    ]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert len(jobs) == 1, "the real config must scrape the job the rules select"
    jobs[0]["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"]}]
    config["scrape_configs"] = jobs
    return config


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base}/api/v1/query", params={"query": promql}, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.fixture(scope="module")
def two_workers(
    contract_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The service through `product-classifier serve` with 2 workers (multiprocess metrics)."""
    live = launch(
        tmp_path_factory.mktemp("prom_server") / "server.log",
        model_path=contract_model,
        env={"PRODUCT_CLASSIFIER_WORKERS": "2"},
    )
    wait_ready(live)
    yield live
    live.stop()


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_add_up_whichever_worker_answers(two_workers: LiveServer) -> None:
    client = two_workers.client()

    # /ready answered by one worker; the other may still be starting. service_ready is the min
    # over the workers that have registered, so it can read 1 before the slower worker has
    # registered at all: wait until both report their process metrics, and then for ready.
    def both_ready() -> bool | None:
        metrics = scrape(client)
        pids = {dict(lbl)["pid"] for name, lbl in metrics if name == "process_cpu_seconds_total"}
        return (len(pids) == 2 and metrics[("service_ready", ())] == 1) or None

    wait_for(both_ready, "both workers ready")
    png = png_bytes(np.full((28, 28), 200, dtype=np.uint8))
    before = scrape(client)
    key = ("http_requests_total", (("method", "POST"), ("route", "/v1/predict"), ("status", "200")))
    for _ in range(10):
        assert client.post("/v1/predict", files={"file": ("a.png", png)}).status_code == 200
    pids = set()
    for _ in range(8):  # new connections: the kernel spreads them over both workers
        with httpx.Client(base_url=two_workers.base_url, timeout=10) as fresh:
            metrics = scrape(fresh)
        assert metrics[key] - before.get(key, 0) == 10
        assert metrics[("service_ready", ())] == 1
        pids |= {dict(lbl)["pid"] for name, lbl in metrics if name == "process_cpu_seconds_total"}
    assert len(pids) == 2  # both workers' CPU and memory, whichever one answered


def test_prometheus_records_and_alertmanager_delivers(
    two_workers: LiveServer, tmp_path: Path
) -> None:
    """Runs last in this module: it stops the service to make the instance-down alert fire."""
    prometheus_bin = _binary("prometheus")
    alertmanager_bin = _binary("alertmanager", "prometheus-alertmanager")
    started = time.monotonic()
    webhook = Webhook()
    am_port, prom_port = free_port(), free_port()
    am_config = {
        "route": {
            "receiver": "test",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "test",
                "webhook_configs": [
                    {"url": f"http://127.0.0.1:{webhook.port}/alerts", "send_resolved": False}
                ],
            }
        ],
    }
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    rules = rules_for_this_test(tmp_path)
    config = prometheus_config(rules, two_workers.port, am_port)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    daemons = []
    try:
        alertmanager = Process(
            [
                alertmanager_bin,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # no gossip port on 0.0.0.0
            ],
            tmp_path / "alertmanager.log",
        )
        daemons.append(alertmanager)
        prometheus = Process(
            [
                prometheus_bin,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
        daemons.append(prometheus)
        wait_ready_url(alertmanager, f"http://127.0.0.1:{am_port}/-/ready")
        wait_ready_url(prometheus, f"http://127.0.0.1:{prom_port}/-/ready")
        prom = Prometheus(prom_port)

        wait_for(lambda: prom.scalar(f'up{{job="{JOB}"}}') == 1 or None, "the target to be up")

        client = two_workers.client()
        png = png_bytes(np.full((28, 28), 90, dtype=np.uint8))
        base = prom.scalar(f'sum(http_requests_total{{job="{JOB}", route="/v1/predict"}})') or 0
        for _ in range(PREDICTIONS):
            assert client.post("/v1/predict", files={"file": ("a.png", png)}).status_code == 200
        assert client.post("/v1/predict", files={"file": ("a.txt", b"text")}).status_code == 415

        # Prometheus sees exactly what was sent, summed over both workers.
        total = f'sum(http_requests_total{{job="{JOB}", route="/v1/predict"}})'
        wait_for(
            lambda: prom.scalar(total) == base + PREDICTIONS + 1 or None,
            f"{total} == {base + PREDICTIONS + 1} (last: {prom.scalar(total)})",
        )
        assert prom.scalar(f'count(process_cpu_seconds_total{{job="{JOB}"}})') == 2

        # Every recording rule the alerts and the dashboard need has a value.
        def recorded(name: str) -> float | None:
            value = prom.scalar(name)
            return None if value is None or math.isnan(value) else value

        for name in (
            "job:http_requests:rate1m",
            "job:http_requests:rate5m",
            "job:http_request_duration_seconds:p95_5m",
            "job:http_request_duration_seconds:mean5m",
            "job:http_request_errors:ratio_rate5m",
            "job:http_request_errors:ratio_rate1d",
            "instance:service_cpu_utilization:ratio_rate5m",
            "instance:process_resident_memory_bytes:sum",
            "job:predictions:rate5m",
            "job:needs_review:ratio_rate15m",
        ):
            wait_for(lambda n=name: recorded(n), f"recording rule {name}")  # type: ignore[misc]
        assert prom.scalar("job:http_request_errors:ratio_rate5m") == 0  # the 415 is no error
        p95 = prom.scalar("job:http_request_duration_seconds:p95_5m")
        assert p95 is not None and 0 < p95 < 0.3
        assert prom.scalar("instance:process_resident_memory_bytes:sum") > 50e6  # type: ignore[operator]
        shares = prom.query("job_category:predictions:share_rate1h")
        assert math.isclose(sum(float(s["value"][1]) for s in shares), 1.0, rel_tol=1e-6)
        assert webhook.alerts.empty()  # a healthy service raises nothing

        # Induce the failure: the service goes away.
        two_workers.stop()
        alert = wait_for(lambda: _next_alert(webhook), "an alert at the webhook", timeout=30)
        assert alert["labels"]["alertname"] == "ProductClassifierInstanceDown"
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["instance"] == f"127.0.0.1:{two_workers.port}"
        assert alert["status"] == "firing"
        assert alert["annotations"]["runbook_url"].endswith("#productclassifierinstancedown")
        firing = prom.query('ALERTS{alertstate="firing"}')
        assert {a["metric"]["alertname"] for a in firing} == {"ProductClassifierInstanceDown"}
        assert time.monotonic() - started < 60
    except BaseException:
        for daemon in daemons:
            print(f"--- {daemon.log_path.name}\n{daemon.log()}")
        raise
    finally:
        for daemon in daemons:
            daemon.stop()
        webhook.close()


def _next_alert(webhook: Webhook) -> dict[str, Any] | None:
    try:
        return webhook.alerts.get_nowait()
    except queue.Empty:
        return None

"""The app with observability, in-process: request log lines, /metrics content and access, hooks.

The same things over real HTTP, with several workers and a real Prometheus, are covered by
tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.serving.app import create_app
from product_classifier.serving.logging_config import ACCESS_LOGGER, JsonFormatter
from product_classifier.serving.settings import ServeSettings

LOCAL = ("127.0.0.1", 50000)


def _png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_contract_model(tmp_path_factory.mktemp("model") / "model.onnx")
    write_model_card(model)
    return model


def make_app(model_path: Path, **settings: Any) -> FastAPI:
    app = create_app(ServeSettings(model_path=model_path, **settings))

    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom", boom, methods=["GET"])
    return app


def run(
    app: FastAPI,
    scenario: Callable[[httpx.AsyncClient], Coroutine[Any, Any, Any]],
    client: tuple[str, int] = LOCAL,
) -> Any:
    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await scenario(http)

    return asyncio.run(main())


class JsonLines(logging.Handler):
    """Formats each record when it is emitted, as the service's handler does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        assert "\n" not in line
        self.lines.append(json.loads(line))

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == ACCESS_LOGGER]


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    package = logging.getLogger("product_classifier")
    previous = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    yield handler
    package.removeHandler(handler)
    package.setLevel(previous)


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_one_json_line_per_request_with_the_prediction(model_path: Path, logs: JsonLines) -> None:
    png = _png()

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await http.post("/v1/predict", files={"file": ("secret-name.png", png)}),
            await http.post(
                "/v1/predict", files={"file": ("a.png", png)}, headers={"X-Request-ID": "trace-1"}
            ),
        ]

    first, second = run(make_app(model_path), scenario)
    lines = logs.access()
    assert [line["route"] for line in lines] == ["/v1/predict", "/v1/predict"]
    line = lines[0]
    body = first.json()
    assert line["request_id"] == first.headers["x-request-id"] == body["request_id"]
    assert lines[1]["request_id"] == "trace-1" == second.headers["x-request-id"]
    assert line["method"] == "POST" and line["status"] == 200 and line["level"] == "info"
    assert line["category"] == body["category"]
    assert line["confidence"] == pytest.approx(body["confidence"], abs=1e-4)
    assert line["needs_review"] is body["needs_review"]
    assert line["model_version"] == body["model_version"]
    assert line["upload_bytes"] == len(png)
    assert line["request_bytes"] > len(png)  # the multipart body around it
    assert line["predictions"] == 1
    assert 0 < line["latency_ms"] < 10_000
    # Never the image, never the client's file name.
    text = json.dumps(logs.lines)
    assert "secret-name" not in text and "IHDR" not in text


def test_batch_request_logs_a_summary_and_counts_every_image(
    model_path: Path, logs: JsonLines
) -> None:
    files = [("files", (f"{i}.png", _png(i))) for i in range(3)] + [("files", ("x.png", b"nope"))]

    async def scenario(http: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
        results = (await http.post("/v1/predict/batch", files=files)).json()["results"]
        return results, (await http.get("/metrics")).text

    results, text = run(make_app(model_path, review_threshold=1.0), scenario)
    line, _scrape = logs.access()
    assert line["route"] == "/v1/predict/batch" and line["status"] == 200
    assert line["predictions"] == 3  # the undecodable file is not a prediction
    assert line["needs_review"] is True  # threshold 1.0: everything needs review
    assert line["upload_bytes"] == sum(len(_png(i)) for i in range(3))
    assert line["category"] is None and line["confidence"] is None
    metrics = parse_metrics(text)
    predicted: dict[str, int] = {}
    for item in results[:3]:
        predicted[item["category"]] = predicted.get(item["category"], 0) + 1
    for category, count in predicted.items():
        assert metrics[("predictions_total", (("category", category),))] == count
        assert metrics[("needs_review_total", (("category", category),))] == count
    assert sum(v for (n, _), v in metrics.items() if n == "predictions_total") == 3
    assert metrics[("inference_batch_size_sum", ())] == 3  # warm-up is not counted


def test_metrics_follow_the_traffic_with_bounded_route_labels(model_path: Path) -> None:
    png = _png()

    async def scenario(http: httpx.AsyncClient) -> str:
        await http.post("/v1/predict", files={"file": ("a.png", png)})
        await http.post("/v1/predict", files={"file": ("a.png", b"not an image")})
        for i in range(3):
            await http.get(f"/no/such/path/{i}")  # distinct raw paths, one label
        await http.request("BREW", "/v1/predict")
        await http.get("/v1/predict")  # 405 on a known route
        # Refused by Content-Length before routing: still labelled with its route.
        await http.post("/v1/predict", content=b"", headers={"content-length": str(1 << 40)})
        await http.get("/health")
        return (await http.get("/metrics")).text

    metrics = parse_metrics(run(make_app(model_path), scenario))

    def requests(method: str, route: str, status: str) -> float | None:
        labels = (("method", method), ("route", route), ("status", status))
        return metrics.get(("http_requests_total", labels))

    assert requests("POST", "/v1/predict", "200") == 1
    assert requests("POST", "/v1/predict", "415") == 1
    assert requests("GET", "other", "404") == 3
    assert requests("other", "/v1/predict", "405") == 1
    assert requests("GET", "/v1/predict", "405") == 1
    assert requests("POST", "/v1/predict", "413") == 1
    assert requests("GET", "/health", "200") == 1
    routes = {dict(labels)["route"] for name, labels in metrics if name == "http_requests_total"}
    assert routes == {"/v1/predict", "other", "/health"}
    assert metrics[("service_ready", ())] == 1
    assert metrics[("inference_duration_seconds_count", ())] == 1
    assert metrics[("http_requests_in_flight", ())] == 1  # the scrape itself


def test_unhandled_error_is_counted_and_logged_with_its_request_id(
    model_path: Path, logs: JsonLines
) -> None:

    async def scenario(http: httpx.AsyncClient) -> tuple[httpx.Response, str]:
        response = await http.get("/boom")
        return response, (await http.get("/metrics")).text

    response, text = run(make_app(model_path), scenario)
    assert response.status_code == 500
    line, _scrape = logs.access()
    assert line["status"] == 500 and line["level"] == "warning" and line["route"] == "/boom"
    errors = [line for line in logs.lines if "exc" in line]
    assert errors and errors[0]["request_id"] == response.headers["x-request-id"]
    assert "kaboom" in errors[0]["exc"]
    labels = (("method", "GET"), ("route", "/boom"), ("status", "500"))
    assert parse_metrics(text)[("http_requests_total", labels)] == 1


def test_probes_and_scrapes_log_at_debug(model_path: Path, logs: JsonLines) -> None:

    async def scenario(http: httpx.AsyncClient) -> None:
        await http.get("/health")
        await http.get("/ready")
        await http.get("/metrics")
        await http.get("/nope")

    run(make_app(model_path), scenario)
    levels = {line["route"]: line["level"] for line in logs.access()}
    assert levels == {"/health": "debug", "/ready": "debug", "/metrics": "debug", "other": "info"}


def test_startup_and_shutdown_lines(model_path: Path, logs: JsonLines) -> None:

    async def nothing(http: httpx.AsyncClient) -> None:
        await http.get("/health")

    run(make_app(model_path), nothing)
    events = {line["event"]: line for line in logs.lines if "event" in line}
    startup, shutdown = events["startup"], events["shutdown"]
    card = json.loads(model_path.with_name("model_card.json").read_text())
    assert startup["model_path"] == str(model_path)
    assert startup["sha256"] == card["sha256"] and startup["sha256_verified"] is True
    assert startup["providers"] == ["CPUExecutionProvider"]
    assert startup["metrics"] == "in-process"
    assert shutdown["requests_served"] == 1 and shutdown["sha256"] == card["sha256"]


def test_metrics_access_control(model_path: Path) -> None:
    async def scrape(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/metrics")

    public = ("203.0.113.9", 40000)
    denied = run(make_app(model_path), scrape, client=public)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert "http_requests_total" not in denied.text
    anyone = run(make_app(model_path, metrics_allowed_networks=[]), scrape, client=public)
    assert anyone.status_code == 200
    assert anyone.headers["content-type"].startswith("text/plain")

    app = make_app(model_path, metrics_token="tok")
    assert run(app, scrape).status_code == 401

    async def with_token(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/metrics", headers={"Authorization": "Bearer tok"})

    assert run(make_app(model_path, metrics_token="tok"), with_token).status_code == 200

    async def disabled(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
        response = await http.get("/metrics")
        return response.status_code, (await http.get("/openapi.json")).json()

    status, openapi = run(make_app(model_path, metrics_enabled=False), disabled)
    assert status == 404
    assert "/metrics" not in openapi["paths"]


def test_metrics_route_is_not_in_the_api_docs(model_path: Path) -> None:
    async def scenario(http: httpx.AsyncClient) -> dict[str, Any]:
        return dict((await http.get("/openapi.json")).json())

    assert "/metrics" not in run(make_app(model_path), scenario)["paths"]

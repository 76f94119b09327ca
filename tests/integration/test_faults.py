"""Faults against real server processes: broken model files, SIGTERM under load, overload,
slow clients. (The sha256-mismatch refusal is covered by test_api_startup.py.)"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from live_server import REPO_ROOT, clean_env, make_contract_model
from PIL import Image
from raw_http import connect, multipart_head, request_head, stream_body

from product_classifier.inference.contract_model import write_model_card
from product_classifier.serving.settings import ServeSettings

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# -- the model on disk --------------------------------------------------------------------


def _missing(model: Path) -> str:
    model.unlink()
    return "model file not found"


def _garbage(model: Path) -> str:
    model.write_bytes(b"this is not an ONNX protobuf \x00\xff" * 100)
    write_model_card(model)  # the card matches: only loading can find the problem
    return "onnx"


def _truncated(model: Path) -> str:
    model.write_bytes(model.read_bytes()[:2000])
    write_model_card(model)
    return "onnx"


def _empty(model: Path) -> str:
    model.write_bytes(b"")
    write_model_card(model)
    return "onnx"


def _card_missing(model: Path) -> str:
    model.with_name("model_card.json").unlink()
    return "model card not found"


def _card_not_json(model: Path) -> str:
    model.with_name("model_card.json").write_text("{not json", encoding="utf-8")
    return "not readable JSON"


BREAKAGES = {
    "missing model": _missing,
    "garbage model": _garbage,
    "truncated model": _truncated,
    "empty model": _empty,
    "missing card": _card_missing,
    "card not JSON": _card_not_json,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_cli_refuses_a_broken_model(tmp_path: Path, breakage: str) -> None:
    model = make_contract_model(tmp_path)
    expected = BREAKAGES[breakage](model)
    result = subprocess.run(
        [sys.executable, "-m", "product_classifier.cli.main", "serve", "--model", str(model)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env({"PRODUCT_CLASSIFIER_PORT": "1"}),  # never reached
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot serve the model" in result.stderr
    assert expected.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("breakage", ["missing model", "garbage model", "missing card"])
def test_plain_uvicorn_refuses_a_broken_model(
    server_factory: Callable[..., LiveServer], tmp_path: Path, breakage: str
) -> None:
    """Without the CLI's pre-flight check the lifespan refuses: non-zero exit, reason logged."""
    model = make_contract_model(tmp_path)
    expected = BREAKAGES[breakage](model)
    live = server_factory(model, via="uvicorn", ready=False)
    assert live.wait_exit(timeout=60) != 0
    log = live.log()
    assert "cannot start" in log
    assert expected.lower() in log.lower()


# -- graceful shutdown --------------------------------------------------------------------


def _slow_body(data: bytes, pieces: int, pause_s: float) -> Iterator[bytes]:
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        yield data[start : start + step]
        time.sleep(pause_s)


def test_sigterm_under_load_lets_in_flight_requests_finish(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    """Requests still uploading or waiting for their micro-batch when SIGTERM arrives all get
    their 200; then the process exits cleanly (timeout_graceful_shutdown is 30 s)."""
    live = server_factory(contract_model, {"PRODUCT_CLASSIFIER_MAX_WAIT_MS": "300"})
    boundary = "gracefulboundary"
    body = (
        multipart_head(boundary, filename="slow.png") + png() + f"\r\n--{boundary}--\r\n".encode()
    )
    results: dict[str, tuple[int, float] | str] = {}

    def slow_upload(name: str) -> None:  # body trickles in over ~1.2 s
        try:
            with httpx.Client(base_url=live.base_url, timeout=30) as client:
                response = client.post(
                    "/v1/predict",
                    content=_slow_body(body, 6, 0.2),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
            results[name] = (response.status_code, time.monotonic())
        except httpx.HTTPError as exc:
            results[name] = repr(exc)

    def batched(name: str) -> None:  # may be held up to 300 ms while another call runs
        try:
            with httpx.Client(base_url=live.base_url, timeout=30) as client:
                response = client.post("/v1/predict", files={"file": ("a.png", png())})
            results[name] = (response.status_code, time.monotonic())
        except httpx.HTTPError as exc:
            results[name] = repr(exc)

    threads = [threading.Thread(target=slow_upload, args=(f"slow{i}",)) for i in range(6)]
    threads += [threading.Thread(target=batched, args=(f"batched{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)  # every slow upload is now mid-body
    sigterm_at = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    exit_code = live.wait_exit(timeout=60)

    failed = {name: r for name, r in results.items() if not (isinstance(r, tuple) and r[0] == 200)}
    assert not failed, f"requests failed during shutdown: {failed}"
    assert len(results) == len(threads)
    # The slow uploads really were in flight: they finished after the signal.
    assert all(
        isinstance(r, tuple) and r[1] > sigterm_at for n, r in results.items() if "slow" in n
    )
    assert exit_code in (0, -signal.SIGTERM)
    log = live.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    with pytest.raises(httpx.TransportError):  # and it is really gone
        httpx.get(f"{live.base_url}/health", timeout=2)


# -- overload -------------------------------------------------------------------------------


def test_overload_fails_fast_with_retry_after_then_recovers(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    live = server_factory(
        contract_model,
        {
            "PRODUCT_CLASSIFIER_QUEUE_SIZE": "2",
            "PRODUCT_CLASSIFIER_MAX_BATCH_FILES": "2",
            "PRODUCT_CLASSIFIER_MAX_BATCH_SIZE": "2",
            "PRODUCT_CLASSIFIER_MAX_WAIT_MS": "300",
            "PRODUCT_CLASSIFIER_RETRY_AFTER_S": "2",
        },
    )
    image = png()
    outcomes: list[tuple[int, float, httpx.Response]] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def burst() -> None:
        with httpx.Client(base_url=live.base_url, timeout=30) as client:
            start.wait()
            began = time.perf_counter()
            response = client.post("/v1/predict", files={"file": ("a.png", image)})
            with lock:
                outcomes.append((response.status_code, time.perf_counter() - began, response))

    threads = [threading.Thread(target=burst) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(status for status, _, _ in outcomes)
    assert set(statuses) <= {200, 503}, statuses
    refused = [(elapsed, r) for status, elapsed, r in outcomes if status == 503]
    assert refused and 200 in statuses, statuses
    for elapsed, response in refused:
        assert response.json()["error"]["code"] == "overloaded"
        assert response.headers["retry-after"] == "2"
        # Refused at once rather than queued behind the 300 ms batching wait.
        assert elapsed < 0.3 + 1.0, f"a 503 took {elapsed:.2f} s"
    assert min(e for e, _ in refused) < 0.3

    # Recovery: once the burst is over, everything is served again.
    client = live.client()
    assert client.get("/ready").status_code == 200
    for _ in range(5):
        assert client.post("/v1/predict", files={"file": ("a.png", image)}).status_code == 200
    assert "Traceback" not in live.log()


# -- slow clients ---------------------------------------------------------------------------


def test_slowloris_upload_times_out_without_blocking_others(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    """Clients trickling a byte a second get a 408 after body_timeout_s; meanwhile normal
    clients are served as fast as ever."""
    live = server_factory(contract_model, {"PRODUCT_CLASSIFIER_BODY_TIMEOUT_S": "2"})
    boundary = "slowboundary"
    body = multipart_head(boundary) + png() + f"\r\n--{boundary}--\r\n".encode()
    answers: list[tuple[float, int, object]] = []

    def slowloris() -> None:
        sock = connect(live.port)
        with sock:
            began = time.monotonic()
            sock.sendall(
                request_head(
                    "POST",
                    "/v1/predict",
                    {
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                        "Content-Length": str(len(body)),
                    },
                )
            )
            one_byte_at_a_time = (body[i : i + 1] for i in range(len(body)))
            sent, response = stream_body(sock, one_byte_at_a_time, chunked=False, pause_s=1.0)
            answers.append((time.monotonic() - began, sent, response))

    slow = [threading.Thread(target=slowloris) for _ in range(4)]
    for thread in slow:
        thread.start()
    latencies = []
    with httpx.Client(base_url=live.base_url, timeout=10) as client:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            began = time.perf_counter()
            response = client.post("/v1/predict", files={"file": ("a.png", png())})
            latencies.append(time.perf_counter() - began)
            assert response.status_code == 200
            time.sleep(0.1)
    for thread in slow:
        thread.join(timeout=30)

    assert len(answers) == 4
    for elapsed, sent, response in answers:
        assert response is not None, f"no answer after {elapsed:.1f} s and {sent} bytes"
        assert response.status == 408, response.body  # type: ignore[attr-defined]
        assert json.loads(response.body)["error"]["code"] == "request_timeout"  # type: ignore[attr-defined]
        assert response.headers.get("connection") == "close"  # type: ignore[attr-defined]
        assert 1.5 < elapsed < 6.0
        assert sent < len(body)
    # Blocked clients would wait out the 2 s deadline; served ones take milliseconds.
    assert max(latencies) < 1.5, f"normal clients were slowed down: {max(latencies):.2f} s"
    assert live.client().get("/ready").status_code == 200


# -- a model that raises, hangs or is slow; a batcher worker that dies -------------------------


class FaultServer:
    """fault_server.py in a subprocess: create_app + uvicorn, with a switch for its model."""

    def __init__(self, tmp_path: Path, model: Path, env: dict[str, str] | None = None) -> None:
        from live_server import free_port

        self.port = free_port()
        self.log_path = tmp_path / "fault_server.log"
        env = clean_env(
            {
                "PRODUCT_CLASSIFIER_MODEL_PATH": str(model),
                # One model slot and a 1 s deadline: one hung call stalls the service.
                "PRODUCT_CLASSIFIER_MODEL_CONCURRENCY": "1",
                "PRODUCT_CLASSIFIER_INFERENCE_TIMEOUT_S": "1.0",
                "PRODUCT_CLASSIFIER_LOG_FORMAT": "text",
                **(env or {}),
            }
        )
        if "drain_s" in ServeSettings.model_fields:  # stop at once (serving/drain.py)
            env["PRODUCT_CLASSIFIER_DRAIN_S"] = "0"
        script = Path(__file__).with_name("fault_server.py")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(script), str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fault(self, mode: str, seconds: float = 0.0) -> None:
        params = {"mode": mode, "seconds": seconds}
        assert self.client.post("/_faults/model", params=params).status_code == 200

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited:\n{self.log()[-3000:]}"
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def fault_server(tmp_path: Path, contract_model: Path) -> Iterator[FaultServer]:
    live = FaultServer(tmp_path, contract_model)
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_model_that_raises_hangs_or_is_slow_gets_json_errors_and_the_service_recovers(
    fault_server: FaultServer,
) -> None:
    client = fault_server.client
    image = png()

    def predict() -> httpx.Response:
        return client.post("/v1/predict", files={"file": ("a.png", image)})

    def batch() -> httpx.Response:
        return client.post("/v1/predict/batch", files=[("files", ("a.png", image))] * 2)

    assert predict().status_code == 200
    # Raises: a JSON 500 with a stable code and no exception text; the next request is fine.
    fault_server.fault("raise")
    for response in (predict(), batch()):
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "secret internals" not in response.text
    assert client.get("/ready").status_code == 200
    # Slow but within the deadline (0.3 s of 1 s): answered.
    fault_server.fault("slow", 0.3)
    assert predict().status_code == 200
    # Hangs: the deadline answers a JSON 504, on the lean path and on the batch route alike,
    # and /ready says 503 while the only model slot is stuck past the deadline.
    fault_server.fault("hang")
    for response in (predict(), batch()):
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "inference_timeout"
        assert response.json()["request_id"] == response.headers["x-request-id"]
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "not_ready"
    assert _metric(client, "inference_timeouts_total") >= 2
    # The model comes back: ready again, and serving.
    fault_server.fault("ok")
    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "never ready again after the model recovered"
        time.sleep(0.05)
    assert predict().status_code == 200


def test_a_killed_batcher_worker_turns_ready_503_is_counted_and_restarted(
    fault_server: FaultServer,
) -> None:
    client = fault_server.client
    assert _metric(client, "batcher_worker_restarts_total") == 0
    # Restart after 3 s, so /ready's 503 can be seen over HTTP in between.
    assert client.post("/_faults/kill-batcher", params={"restart_delay": 3}).status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503, ready.text
    assert "worker died" in ready.json()["error"]["message"]
    assert ready.headers["retry-after"] == "1"
    refused = client.post("/v1/predict", files={"file": ("a.png", png())})
    assert refused.status_code == 503  # refused at once, not queued behind a dead worker
    assert refused.json()["error"]["code"] == "not_ready"
    assert _metric(client, "batcher_worker_restarts_total") == 1
    assert _metric(client, "service_ready") == 0
    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the batcher worker was never restarted"
        time.sleep(0.05)
    assert client.post("/v1/predict", files={"file": ("a.png", png())}).status_code == 200
    assert _metric(client, "service_ready") == 1
    log = fault_server.log()
    assert "micro-batcher worker died" in log and "micro-batcher worker restarted" in log


def test_a_full_queue_answers_503_with_retry_after_at_once(
    tmp_path: Path, contract_model: Path
) -> None:
    """One request hangs in the only model slot, one fills the queue of one: the next is
    refused at once, and both admitted requests are answered once the model is back."""
    live = FaultServer(
        tmp_path,
        contract_model,
        {
            "PRODUCT_CLASSIFIER_QUEUE_SIZE": "1",
            "PRODUCT_CLASSIFIER_MAX_BATCH_FILES": "1",
            "PRODUCT_CLASSIFIER_RETRY_AFTER_S": "3",
            "PRODUCT_CLASSIFIER_INFERENCE_TIMEOUT_S": "60",
        },
    )
    try:
        live.wait_ready()
        live.fault("hang")
        answers: list[int] = []

        def admitted() -> None:
            with httpx.Client(base_url=live.client.base_url, timeout=60) as client:
                answers.append(
                    client.post("/v1/predict", files={"file": ("a.png", png())}).status_code
                )

        threads = [threading.Thread(target=admitted) for _ in range(2)]
        deadline = time.monotonic() + 30
        threads[0].start()
        while live.client.get("/_faults/model").json()["hanging"] < 1:  # in the model slot...
            assert time.monotonic() < deadline, "the first request never reached the model"
            time.sleep(0.01)
        threads[1].start()
        while live.client.get("/v1/model").json()["runtime"]["batching"]["queued"] < 1:
            assert time.monotonic() < deadline, "the second request never reached the queue"
            time.sleep(0.01)  # ...and one in the queue
        refused = live.client.post("/v1/predict", files={"file": ("b.png", png())})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "3"
        live.fault("ok")
        for thread in threads:
            thread.join(timeout=60)
        assert answers == [200, 200]
    finally:
        live.fault("ok")
        live.stop()

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

    def batched(name: str) -> None:  # waits up to 300 ms in the micro-batcher
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

"""API keys, CORS and filename handling against real servers over HTTP."""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from live_server import REPO_ROOT
from PIL import Image
from raw_http import connect, request_head, stream_body

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration

KEY_A = "key-a-" + "0123456789abcdef"
KEY_B = "key-b-" + "fedcba9876543210"
SHOP = "https://shop.example"


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def keyed_server(server_factory: Callable[..., LiveServer], contract_model: Path) -> LiveServer:
    return server_factory(
        contract_model,
        {
            "PRODUCT_CLASSIFIER_API_KEYS": f"{KEY_A},{KEY_B}",
            "PRODUCT_CLASSIFIER_CORS_ORIGINS": SHOP,
        },
    )


def assert_401(response, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"]["code"] == "unauthorized"
    assert needle in body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_auth_is_off_by_default(server: LiveServer) -> None:
    client = server.client()
    assert client.get("/v1/categories").status_code == 200
    assert client.post("/v1/predict", files={"file": ("a.png", png())}).status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_v1_needs_a_valid_key(keyed_server: LiveServer) -> None:
    client = keyed_server.client()
    assert_401(client.get("/v1/categories"), "missing API key")
    assert_401(client.get("/v1/model", headers={"X-API-Key": "not-a-valid-key-at-all"}), "invalid")
    assert_401(client.get("/v1/model", headers={"X-API-Key": KEY_A[:-1]}), "invalid")
    assert_401(client.get("/v1/model", headers={"X-API-Key": KEY_A + "x"}), "invalid")
    assert_401(client.get("/v1/model", headers={"Authorization": f"Basic {KEY_A}"}), "missing")
    assert_401(client.post("/v1/predict", files={"file": ("a.png", png())}), "missing API key")
    assert_401(client.post("/v1/predict/batch", files={"files": ("a.png", png())}), "missing")
    assert_401(client.get("/v1/nonexistent"), "missing API key")  # no route probing


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": KEY_A},
        {"X-API-Key": KEY_B},
        {"Authorization": f"Bearer {KEY_A}"},
        {"Authorization": f"bearer {KEY_B}"},
    ],
)
def test_either_header_and_every_key_work(keyed_server: LiveServer, headers: dict) -> None:
    client = keyed_server.client()
    assert client.get("/v1/categories", headers=headers).status_code == 200
    response = client.post("/v1/predict", files={"file": ("a.png", png())}, headers=headers)
    assert response.status_code == 200, response.text


def test_probes_and_docs_stay_open(keyed_server: LiveServer) -> None:
    client = keyed_server.client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    predict = schema["paths"]["/v1/predict"]["post"]
    assert {"ApiKeyHeader": []} in predict["security"] and "401" in predict["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_unauthenticated_upload_is_refused_before_its_body(keyed_server: LiveServer) -> None:
    """The 401 arrives after the headers alone: an anonymous client costs no parsing."""
    sock = connect(keyed_server.port)
    with sock:
        sock.sendall(
            request_head(
                "POST",
                "/v1/predict",
                {
                    "Content-Type": "multipart/form-data; boundary=b",
                    "Content-Length": str(9 * 1024 * 1024),
                },
            )
        )
        _, response = stream_body(sock, [], chunked=False)
    assert response is not None and response.status == 401
    assert response.headers.get("connection") == "close"


def test_keys_never_reach_the_log(keyed_server: LiveServer) -> None:
    client = keyed_server.client()
    client.get("/v1/model", headers={"X-API-Key": KEY_A})
    client.get("/v1/model", headers={"Authorization": f"Bearer {KEY_B}"})
    log = keyed_server.log()
    assert KEY_A not in log and KEY_B not in log


def test_cors_allows_only_the_configured_origin(keyed_server: LiveServer) -> None:
    client = keyed_server.client()
    preflight = {"Origin": SHOP, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-api-key"}  # fmt: skip
    ok = client.options("/v1/predict", headers=preflight)
    assert ok.status_code == 200  # preflights carry no key, and need none
    assert ok.headers["access-control-allow-origin"] == SHOP
    evil = client.options("/v1/predict", headers={**preflight, "Origin": "https://evil.example"})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    # A refused request still carries CORS headers, so the page can show the 401.
    refused = client.get("/v1/categories", headers={"Origin": SHOP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == SHOP
    allowed = client.get("/v1/categories", headers={"Origin": SHOP, "X-API-Key": KEY_A})
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()


def test_cors_is_off_unless_configured(server: LiveServer) -> None:
    client = server.client()
    response = client.get("/v1/categories", headers={"Origin": SHOP})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/v1/predict", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def _files_named(token: str, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in {".git", ".venv", "node_modules"}]
            found += [os.path.join(dirpath, n) for n in filenames + dirnames if token in n]
    return found


def multipart(field: str, parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    """Hand-built multipart body: httpx would percent-encode odd filenames, a client may not."""
    body = b""
    for name, data in parts:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


def test_filenames_are_only_echoed_and_sanitised(server: LiveServer) -> None:
    token = uuid.uuid4().hex
    names = [
        f"../../../tmp/{token}.png",
        f"..\\..\\{token}\\evil.png",
        f"<script>alert(1)</script>{token}.png",
        f"nul\x00esc\x1b{token}.png",
        f"invoice\u202egnp{token}.png",
        "x" * 1000 + ".png",
        "..",
    ]
    response = server.client().post(
        "/v1/predict/batch",
        content=multipart("files", [(name, png()) for name in names]),
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status_code == 200, response.text
    echoed = [r["filename"] for r in response.json()["results"]]
    assert echoed[0] == f"{token}.png"
    assert echoed[1] == "evil.png"
    assert echoed[2] == f"script_{token}.png"  # "</script>" split it like a path
    assert echoed[3] == f"nul_esc_{token}.png"
    assert echoed[4] == f"invoice_gnp{token}.png"
    assert echoed[5] == "x" * 255
    assert echoed[6] is None
    # Nothing named after the upload exists anywhere the server could have written it.
    assert _files_named(token, Path(tempfile.gettempdir()), REPO_ROOT) == []


def test_metrics_by_default_refuse_forwarded_requests(server: LiveServer) -> None:
    """A reverse proxy on the same host makes every client look like 127.0.0.1: a request
    that says it was forwarded, by a proxy nobody configured as trusted, is refused."""
    client = server.client()
    assert client.get("/metrics").status_code == 200
    for header, value in (("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=127.0.0.1")):
        refused = client.get("/metrics", headers={header: value})
        assert refused.status_code == 403, (header, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"


def test_metrics_follow_the_client_a_trusted_proxy_names(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    """Here the test client plays the proxy (127.0.0.1) and a scraper on 10.0.0.0/8."""
    proxied = server_factory(
        contract_model,
        {
            "PRODUCT_CLASSIFIER_TRUSTED_PROXIES": "127.0.0.1/32",
            "PRODUCT_CLASSIFIER_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8",
        },
    )
    client = proxied.client()
    allowed = [
        {"X-Forwarded-For": "10.1.2.3"},
        {"Forwarded": 'for="10.1.2.3:5000";proto=http'},
    ]
    refused = [
        {},  # the proxy itself is not the scraper's network
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-For": "10.1.2.3, 203.0.113.9"},  # the client wrote the first entry
        {"Forwarded": "for=_hidden"},
        {"Forwarded": "for=10.1.2.3", "X-Forwarded-For": "203.0.113.9"},
    ]
    for headers in allowed:
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert "http_requests_total" in response.text
    for headers in refused:
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 403, (headers, response.text)


def test_an_operator_metrics_directory_keeps_what_it_holds(
    server_factory: Callable[..., LiveServer], contract_model: Path, tmp_path: Path
) -> None:
    """Two workers with the operator's PROMETHEUS_MULTIPROC_DIR: the service writes to a
    directory of its own inside it and never deletes files it did not create (another
    service's live metrics look just like stale ones)."""
    shared = tmp_path / "shared-metrics"
    shared.mkdir()
    foreign = {"counter_4242.db": b"another service's counters", "notes.txt": b"mine"}
    for name, data in foreign.items():
        (shared / name).write_bytes(data)
    live = server_factory(
        contract_model,
        {"PRODUCT_CLASSIFIER_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(shared)},
    )
    client = live.client()
    assert client.post("/v1/predict", files={"file": ("a.png", png())}).status_code == 200
    assert "http_requests_total" in client.get("/metrics").text
    own = [p for p in shared.iterdir() if p.is_dir()]
    assert len(own) == 1 and own[0].name.startswith("product-classifier-")
    assert any(p.suffix == ".db" for p in own[0].iterdir())  # the workers write there
    assert live.stop() == 0
    assert {name: (shared / name).read_bytes() for name in foreign} == foreign
    assert not own[0].exists()  # its own directory goes with it

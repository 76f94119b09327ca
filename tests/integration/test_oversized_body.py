"""Oversized uploads get the 413 JSON in every common client, not a connection reset.

Python's urllib and requests (and httpx) write the whole body before they read the answer; a
server that answers early and closes on unread bytes resets the connection, and the client
never sees the 413. The service reads and drops the rest of the body first (bounded by
PRODUCT_CLASSIFIER_DISCARD_OVERSIZE_BYTES); a client that asks ``Expect: 100-continue`` gets
the 413 without sending the body at all.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
import requests
from raw_http import connect, multipart_head, read_response, request_head

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration

BOUNDARY = "oversizeboundary"
HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
UPLOAD_MB = 30  # the default limit for /v1/predict is 10 MiB


@pytest.fixture(scope="module")
def big_body() -> bytes:
    return (
        multipart_head(BOUNDARY)
        + b"\x89PNG" * (UPLOAD_MB * 1024 * 256)
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _assert_payload_too_large(status: int, body: bytes) -> None:
    assert status == 413, body[:300]
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_urllib_gets_the_413_json(server: LiveServer, big_body: bytes) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/v1/predict", data=big_body, headers=HEADERS, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    _assert_payload_too_large(caught.value.code, caught.value.read())


def test_requests_gets_the_413_json(server: LiveServer, big_body: bytes) -> None:
    response = requests.post(
        f"{server.base_url}/v1/predict", data=big_body, headers=HEADERS, timeout=60
    )
    _assert_payload_too_large(response.status_code, response.content)
    assert response.headers["connection"] == "close"


def test_httpx_gets_the_413_json(server: LiveServer, big_body: bytes) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/predict", content=big_body, headers=HEADERS, timeout=60
    )
    _assert_payload_too_large(response.status_code, response.content)


def test_a_chunked_upload_over_the_limit_gets_the_413_json(
    server: LiveServer, big_body: bytes
) -> None:
    """No Content-Length: the limit trips while the body streams in; the rest is read too."""

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big_body), 1 << 20):
            yield big_body[start : start + (1 << 20)]

    response = httpx.post(
        f"{server.base_url}/v1/predict", content=chunks(), headers=HEADERS, timeout=60
    )
    _assert_payload_too_large(response.status_code, response.content)


def test_expect_100_continue_gets_the_413_before_sending_the_body(
    server: LiveServer, big_body: bytes
) -> None:
    sock = connect(server.port)
    with sock:
        sock.sendall(
            request_head(
                "POST",
                "/v1/predict",
                {**HEADERS, "Content-Length": str(len(big_body)), "Expect": "100-continue"},
            )
        )
        response = read_response(sock)  # not "100 Continue": the final answer, body unsent
    _assert_payload_too_large(response.status, response.body)
    assert response.headers["connection"] == "close"

"""Every way a request can go wrong, against the real server: JSON 4xx/503, never a 500."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD = 10 * MIB

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="28" height="28">'
SVG += b'<rect width="20" height="20" fill="white"/></svg>'
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><img src='shirt.png'></body></html>"


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def noise_png(size: int, make_image: Callable[..., bytes]) -> bytes:
    rng = np.random.default_rng(0)
    return make_image(rng.integers(0, 256, size=(size, size), dtype=np.uint8))


def png_claiming_size(width: int, height: int, make_image: Callable[..., bytes]) -> bytes:
    """A valid tiny PNG whose header (with a correct CRC) claims width x height pixels."""
    data = bytearray(make_image(np.zeros((1, 1), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "payload", "status", "code"),
    [
        ("notes.txt", b"just some text, certainly not pixels\n", 415, "unsupported_media_type"),
        ("logo.svg", SVG, 415, "unsupported_media_type"),
        ("spec.pdf", PDF, 415, "unsupported_media_type"),
        ("page.html", HTML, 415, "unsupported_media_type"),
        ("empty.png", b"", 400, "empty_file"),
        ("fake.jpg", b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50, 400, "corrupt_image"),
    ],
)
def test_bad_uploads(server: LiveServer, name: str, payload: bytes, status: int, code: str) -> None:
    # Declared as image/png on purpose: the bytes decide, not the client's label.
    response = server.client().post("/v1/predict", files={"file": (name, payload, "image/png")})
    assert_error(response, status, code)


@pytest.mark.parametrize("keep", [0.5, 40 / 12000])
def test_truncated_png(server: LiveServer, make_image: Callable[..., bytes], keep: float) -> None:
    png = noise_png(110, make_image)  # incompressible, ~12 KB
    cut = png[: max(40, int(len(png) * keep))]
    response = server.client().post("/v1/predict", files={"file": ("cut.png", cut, "image/png")})
    assert_error(response, 400, "corrupt_image")


def test_too_many_pixels(server: LiveServer, make_image: Callable[..., bytes]) -> None:
    bomb = png_claiming_size(8000, 6000, make_image)  # 48 MP > 16.8 MP, in ~70 bytes
    response = server.client().post("/v1/predict", files={"file": ("bomb.png", bomb)})
    body = assert_error(response, 413, "image_too_large")
    assert "8000x6000" in body["error"]["message"]


def test_no_file_at_all(server: LiveServer) -> None:
    assert_error(server.client().post("/v1/predict"), 422, "missing_file")


def test_file_in_the_wrong_field(server: LiveServer, make_image: Callable[..., bytes]) -> None:
    png = make_image(np.zeros((28, 28), np.uint8))
    response = server.client().post("/v1/predict", files={"image": ("x.png", png)})
    body = assert_error(response, 422, "missing_file")
    assert "'file'" in body["error"]["message"]


def test_text_field_instead_of_a_file(server: LiveServer) -> None:
    response = server.client().post("/v1/predict", data={"file": "shirt.png"})
    assert_error(response, 422, "validation_error")


def test_raw_body_instead_of_multipart(
    server: LiveServer, make_image: Callable[..., bytes]
) -> None:
    png = make_image(np.zeros((28, 28), np.uint8))
    response = server.client().post(
        "/v1/predict", content=png, headers={"Content-Type": "image/png"}
    )
    assert_error(response, 422, "missing_file")


def test_broken_multipart(server: LiveServer) -> None:
    response = server.client().post(
        "/v1/predict",
        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert_error(response, 400, "invalid_multipart")


def test_oversized_upload_is_refused_by_content_length(server: LiveServer) -> None:
    big = b"\0" * (DEFAULT_MAX_UPLOAD + 200 * 1024)
    response = server.client().post("/v1/predict", files={"file": ("big.png", big)})
    assert_error(response, 413, "payload_too_large")


def test_oversized_upload_is_refused_while_streaming(server: LiveServer) -> None:
    """Chunked transfer encoding: no Content-Length, so the limit is enforced while reading."""
    boundary = "streamboundary"
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        chunk = b"\0" * MIB
        for _ in range(12):
            sent["bytes"] += len(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    response = server.client().post(
        "/v1/predict",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


def test_file_just_over_the_limit(server: LiveServer) -> None:
    """Within the multipart allowance, so the body is read; the file itself is too big."""
    big = b"\0" * (DEFAULT_MAX_UPLOAD + 1)
    response = server.client().post("/v1/predict", files={"file": ("big.png", big)})
    body = assert_error(response, 413, "file_too_large")
    assert str(DEFAULT_MAX_UPLOAD) in body["error"]["message"]


def test_batch_with_too_many_files(server: LiveServer, make_image: Callable[..., bytes]) -> None:
    png = make_image(np.zeros((28, 28), np.uint8))
    files = [("files", (f"{i}.png", png, "image/png")) for i in range(65)]
    assert_error(server.client().post("/v1/predict/batch", files=files), 413, "too_many_files")


def test_batch_without_files(server: LiveServer) -> None:
    response = server.client().post("/v1/predict/batch", data={"note": "nothing"})
    assert_error(response, 422, "missing_file")


def test_batch_items_fail_individually(
    server: LiveServer, make_image: Callable[..., bytes]
) -> None:
    bomb = png_claiming_size(9000, 9000, make_image)
    cut = noise_png(110, make_image)[:5000]
    files = [
        ("files", ("bomb.png", bomb, "image/png")),
        ("files", ("cut.png", cut, "image/png")),
        ("files", ("logo.svg", SVG, "image/svg+xml")),
    ]
    response = server.client().post("/v1/predict/batch", files=files)
    assert response.status_code == 200
    codes = [r["error"]["code"] for r in response.json()["results"]]
    assert codes == ["image_too_large", "corrupt_image", "unsupported_media_type"]


def test_unknown_path_and_wrong_method(server: LiveServer) -> None:
    client = server.client()
    assert_error(client.get("/v2/predict"), 404, "not_found")
    assert_error(client.get("/v1/predict"), 405, "method_not_allowed")
    assert_error(client.delete("/v1/model"), 405, "method_not_allowed")


def test_server_survives_all_of_the_above(server: LiveServer) -> None:
    client = server.client()
    assert client.get("/ready").status_code == 200
    assert "Traceback" not in server.log()
    assert "unhandled error" not in server.log()

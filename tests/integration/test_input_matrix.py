"""Hostile and messy inputs through real HTTP: every one is a precise 4xx JSON or a 200.

The server is the shared ``server`` fixture (contract model, default limits). The last test
checks that none of this produced a 5xx, a traceback or an unready service.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image
from raw_http import connect, multipart_head, request_head, stream_body

from product_classifier.constants import CLASS_NAMES

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD = 10 * MIB
DEFAULT_MAX_BATCH_FILES = 64


# -- images ---------------------------------------------------------------------------------


def item(h: int = 64, w: int = 48) -> np.ndarray:
    """An asymmetric dark 'product' on white (an L-shaped boot), so rotations are visible."""
    arr = np.full((h, w), 255, np.uint8)
    arr[h // 8 : h - h // 8, w // 6 : w // 2] = 40
    arr[h - h // 3 : h - h // 8, w // 6 : w - w // 8] = 70
    return arr


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def rgba_png() -> bytes:
    rgba = np.zeros((64, 48, 4), np.uint8)
    rgba[8:56, 8:24] = (120, 20, 20, 255)  # opaque item, transparent page
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def palette_transparent_png() -> bytes:
    image = Image.fromarray(item()).convert("P")
    return encode(image, "PNG", transparency=int(np.asarray(image)[0, 0]))


def png_16bit() -> bytes:
    return encode(Image.fromarray(item().astype(np.uint16) * 257), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(item()).convert("RGB").convert("CMYK"), "JPEG", quality=95)


def exif_rotated_jpeg() -> bytes:
    """Stored sideways with orientation 6 ('rotate 90 CW to display'), displays as item()."""
    stored = Image.fromarray(item()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=100, exif=exif.tobytes())


def animated_gif(first: np.ndarray, second: np.ndarray) -> bytes:
    frames = [Image.fromarray(first), Image.fromarray(second)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (CRC fixed up) declares width x height."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("L", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("L", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def real_png_bomb() -> bytes:
    """100 megapixels of black in ~15 KB: a genuine zlib bomb, not just a lying header."""
    return encode(Image.new("1", (10_000, 10_000)), "PNG")


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def noisy_photo(fmt: str) -> bytes:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    return encode(Image.fromarray(rgb), fmt)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="9"/></svg>'
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
HTML = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"

ACCEPTED: dict[str, Callable[[], bytes]] = {
    "rgba.png": rgba_png,
    "palette-transparency.png": palette_transparent_png,
    "16bit.png": png_16bit,
    "cmyk.jpg": cmyk_jpeg,
    "exif-rotated.jpg": exif_rotated_jpeg,
    "animated.gif": lambda: animated_gif(item(), np.ascontiguousarray(np.flipud(item()))),
    "photo.bmp": lambda: encode(Image.fromarray(item()), "BMP"),
    "photo.webp": lambda: encode(Image.fromarray(item()).convert("RGB"), "WEBP"),
    "photo.tiff": lambda: encode(Image.fromarray(item()), "TIFF"),
    "progressive.jpg": lambda: encode(Image.fromarray(item()), "JPEG", progressive=True),
    "la.png": lambda: encode(Image.fromarray(item()).convert("LA"), "PNG"),
    "1bit.png": lambda: encode(Image.fromarray(item()).convert("1"), "PNG"),
    "pixel-1x1.png": lambda: encode(Image.new("L", (1, 1), 200), "PNG"),
    "strip-4000x10.png": lambda: encode(Image.fromarray(item(10, 4000)), "PNG"),
    "strip-10x4000.png": lambda: encode(Image.fromarray(item(4000, 10)), "PNG"),
    "noise.jpg": lambda: noisy_photo("JPEG"),
}

REJECTED_FILES: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "empty.png": (lambda: b"", 400, "empty_file"),
    "random.bin": (lambda: np.random.default_rng(0).bytes(4096), 415, "unsupported_media_type"),
    "notes.txt": (lambda: b"a plain text file\n" * 10, 415, "unsupported_media_type"),
    "logo.svg": (lambda: SVG, 415, "unsupported_media_type"),
    "spec.pdf": (lambda: PDF, 415, "unsupported_media_type"),
    "page.html": (lambda: HTML, 415, "unsupported_media_type"),
    "truncated.png": (lambda: truncated(noisy_photo("PNG")), 400, "corrupt_image"),
    "header-only.png": (lambda: noisy_photo("PNG")[:40], 400, "corrupt_image"),
    "truncated.jpg": (lambda: truncated(noisy_photo("JPEG")), 400, "corrupt_image"),
    "truncated.webp": (lambda: truncated(noisy_photo("WEBP")), 400, "corrupt_image"),
    "bomb-100000x100000.png": (lambda: png_claiming(100_000, 100_000), 413, "image_too_large"),
    "bomb-60000x60000.jpg": (lambda: jpeg_claiming(60_000, 60_000), 413, "image_too_large"),
    "bomb-65535x65535.gif": (lambda: gif_claiming(65_535, 65_535), 413, "image_too_large"),
    "bomb-real-100mp.png": (real_png_bomb, 413, "image_too_large"),
}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def assert_prediction(result: dict) -> None:
    assert result["category"] in CLASS_NAMES
    assert 0.0 <= result["confidence"] <= 1.0
    assert len(result["top_k"]) == 3
    assert result["top_k"][0]["class_id"] == result["class_id"]


# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_formats_and_shapes(server: LiveServer, name: str) -> None:
    data = ACCEPTED[name]()
    # A lying content type must not matter: the bytes decide.
    response = server.client().post(
        "/v1/predict", files={"file": (name, data, "application/octet-stream")}
    )
    assert response.status_code == 200, response.text
    assert_prediction(response.json())


def test_all_accepted_inputs_in_one_batch(server: LiveServer) -> None:
    files = [("files", (name, make(), "image/png")) for name, make in ACCEPTED.items()]
    response = server.client().post("/v1/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == list(ACCEPTED)
    for result in results:
        assert "error" not in result, result
        assert_prediction(result)


def probabilities(response: httpx.Response) -> dict[int, float]:
    assert response.status_code == 200, response.text
    return {entry["class_id"]: entry["probability"] for entry in response.json()["top_k"]}


def test_exif_orientation_is_applied_before_classifying(server: LiveServer) -> None:
    client = server.client()
    upright = probabilities(
        client.post(
            "/v1/predict", files={"file": ("u.png", encode(Image.fromarray(item()), "PNG"))}
        )
    )
    rotated = probabilities(
        client.post("/v1/predict", files={"file": ("r.jpg", exif_rotated_jpeg())})
    )
    sideways_png = encode(Image.fromarray(item()).transpose(Image.Transpose.ROTATE_90), "PNG")
    sideways = probabilities(client.post("/v1/predict", files={"file": ("s.png", sideways_png)}))
    assert rotated.keys() == upright.keys()
    assert all(abs(rotated[k] - upright[k]) < 0.01 for k in upright)
    # ...and the model does see the difference, so the check above means something.
    assert sideways != upright


def test_animated_gif_is_classified_by_its_first_frame(server: LiveServer) -> None:
    client = server.client()
    first, second = item(), np.ascontiguousarray(np.flipud(item()))
    gif = probabilities(
        client.post("/v1/predict", files={"file": ("a.gif", animated_gif(first, second))})
    )
    only_first = probabilities(
        client.post("/v1/predict", files={"file": ("1.png", encode(Image.fromarray(first), "PNG"))})
    )
    only_second = probabilities(
        client.post(
            "/v1/predict", files={"file": ("2.png", encode(Image.fromarray(second), "PNG"))}
        )
    )
    assert gif == only_first
    assert gif != only_second


# -- rejected -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REJECTED_FILES))
def test_rejected_files(server: LiveServer, name: str) -> None:
    make, status, code = REJECTED_FILES[name]
    response = server.client().post("/v1/predict", files={"file": (name, make(), "image/png")})
    assert_error(response, status, code)


def test_rejected_files_fail_one_by_one_in_a_batch(server: LiveServer) -> None:
    good = ACCEPTED["photo.webp"]()
    files = [("files", ("good.webp", good, "image/webp"))]
    files += [
        ("files", (name, make(), "image/png")) for name, (make, _, _) in REJECTED_FILES.items()
    ]
    response = server.client().post("/v1/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert_prediction(results[0])
    assert [r["error"]["code"] for r in results[1:]] == [c for _, _, c in REJECTED_FILES.values()]


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "code"),
    [
        ("no body at all", {}, 422, "missing_file"),
        (
            "empty multipart",
            {"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
            422,
            "missing_file",
        ),
        (
            "file in the wrong field",
            {"files": {"image": ("x.png", b"\x89PNG")}},
            422,
            "missing_file",
        ),
        (
            "only a text field",
            {"data": {"note": "hello"}, "files": {"other": ("n.txt", b"x")}},
            422,
            "missing_file",
        ),
        ("text instead of a file", {"data": {"file": "shirt.png"}}, 422, "validation_error"),
        ("JSON body", {"json": {"file": "aGVsbG8="}}, 422, "missing_file"),
        ("urlencoded form", {"data": {"url": "http://127.0.0.1/x.png"}}, 422, "missing_file"),
        (
            "raw image body",
            {"content": b"\x89PNG\r\n\x1a\n", "headers": {"Content-Type": "image/png"}},
            422,
            "missing_file",
        ),
        (
            "multipart without boundary",
            {"content": b"--x--", "headers": {"Content-Type": "multipart/form-data"}},
            400,
            "invalid_multipart",
        ),
    ],
)
def test_malformed_requests(
    server: LiveServer, case: str, kwargs: dict, status: int, code: str
) -> None:
    response = server.client().post("/v1/predict", **kwargs)
    assert_error(response, status, code)


def test_more_files_than_the_batch_limit(server: LiveServer) -> None:
    png = encode(Image.new("L", (28, 28)), "PNG")
    files = [("files", (f"{i}.png", png, "image/png")) for i in range(DEFAULT_MAX_BATCH_FILES + 1)]
    body = assert_error(
        server.client().post("/v1/predict/batch", files=files), 413, "too_many_files"
    )
    assert str(DEFAULT_MAX_BATCH_FILES) in body["error"]["message"]


def test_oversized_declared_length_is_refused_unread(server: LiveServer) -> None:
    """A Content-Length over the limit gets its 413 before a byte of the body is sent."""
    sock = connect(server.port)
    with sock:
        sock.sendall(
            request_head(
                "POST",
                "/v1/predict",
                {
                    "Content-Type": "multipart/form-data; boundary=b",
                    "Content-Length": str(5 * 1024 * MIB),  # 5 GiB, never sent
                },
            )
        )
        _, response = stream_body(sock, [], chunked=False)
    assert response is not None and response.status == 413
    assert response.json()["error"]["code"] == "payload_too_large"


class RssSampler:
    """Peak resident memory of a process, sampled every 10 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_oversized_chunked_upload_is_cut_off_while_streaming(server: LiveServer) -> None:
    """200 MiB offered with chunked encoding and no Content-Length: the server answers 413
    after about the limit, never reads the rest, and its memory does not grow by the body."""
    offered = 200 * MIB
    chunk = np.random.default_rng(0).bytes(MIB)  # incompressible, in case anything buffers
    boundary = "streamboundary"

    def body():  # type: ignore[no-untyped-def]
        yield multipart_head(boundary)
        for _ in range(offered // MIB):
            yield chunk

    with RssSampler(server.process.pid) as rss:
        sock = connect(server.port)
        with sock:
            sock.sendall(
                request_head(
                    "POST",
                    "/v1/predict",
                    {
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                        "Transfer-Encoding": "chunked",
                    },
                )
            )
            sent, response = stream_body(sock, body(), chunked=True)
    assert response is not None, f"no answer after sending {sent} bytes"
    assert response.status == 413, response.body
    assert response.json()["error"]["code"] == "payload_too_large"
    # The answer came while we were still sending: at most the limit plus socket buffers.
    assert sent < DEFAULT_MAX_UPLOAD + 16 * MIB < offered
    growth = rss.peak - rss.baseline
    assert growth < 32 * MIB, f"server RSS grew by {growth / MIB:.1f} MiB"


def test_nothing_above_broke_the_server(server: LiveServer) -> None:
    client = server.client()
    assert client.get("/ready").status_code == 200
    response = client.post(
        "/v1/predict", files={"file": ("ok.png", encode(Image.fromarray(item()), "PNG"))}
    )
    assert response.status_code == 200
    log = server.log()
    assert "Traceback" not in log
    assert "unhandled error" not in log
    assert not re.search(r'"status": ?5\d\d', log), "a 5xx was logged"
    # Every request this shared server answered so far (this file, the fuzzer, the API
    # tests): none was a 5xx, per its own Prometheus counters.
    metrics = client.get("/metrics")
    if metrics.status_code == 200:
        served_5xx = [
            line
            for line in metrics.text.splitlines()
            if line.startswith("http_requests") and re.search(r'status="5\d\d"', line)
        ]
        assert not served_5xx, served_5xx

"""The download path against real HTTP servers on 127.0.0.1 serving the real .gz files.

One server plays several mirrors by URL prefix: /good/ serves the files, /missing/ answers 404,
/flaky/ fails every file's first request with 503 and its second with a connection cut short,
/corrupt/ serves damaged files and /slow/ never answers in time.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from product_classifier.data import fashion_mnist as fm
from product_classifier.data.errors import DatasetNotFoundError
from product_classifier.data.verify import CACHE_FILENAME

pytestmark = pytest.mark.integration


def _corrupt(name: str, good: bytes) -> bytes:
    if "labels" in name:
        # Valid gzip and valid IDX, one label changed: only the checksum can catch it.
        payload = bytearray(gzip.decompress(good))
        payload[-1] = (payload[-1] + 1) % 10
        return gzip.compress(bytes(payload))
    return good[: len(good) // 2]  # a truncated gzip, honestly announced as such


class Mirrors(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files  # name -> the official .gz bytes
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()

    def url(self, mirror: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mirror}/"


class Handler(BaseHTTPRequestHandler):
    server: Mirrors

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, body: bytes, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the /slow/ test)
            self.close_connection = True

    def do_GET(self) -> None:
        _, mirror, name = self.path.split("/", 2)
        with self.server.lock:
            self.server.requests[self.path] += 1
            seen = self.server.requests[self.path]
        good = self.server.files.get(name)
        if good is None or mirror == "missing":
            self.send_error(404)
        elif mirror == "good":
            self._send(good)
        elif mirror == "flaky" and seen == 1:
            self.send_error(503)
        elif mirror == "flaky" and seen == 2:
            self._send(good[:1000], length=len(good))  # then the connection closes
            self.close_connection = True
        elif mirror == "flaky":
            self._send(good)
        elif mirror == "corrupt":
            self._send(_corrupt(name, good))
        elif mirror == "slow":
            time.sleep(1.0)
            self._send(good)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def mirrors(fashion_mnist) -> Iterator[Mirrors]:
    server = Mirrors({spec.gz_name: fashion_mnist.gz_bytes(spec) for spec in fm.FILES})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirrors: Mirrors) -> Path:
    monkeypatch.delenv(fm.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv(fm.ENV_MIRRORS, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fm, "SYSTEM_DATA_DIR", tmp_path / "no-system-copy")
    mirrors.requests.clear()
    return tmp_path


def test_download_falls_back_past_404_and_retries_transient_failures(
    isolated: Path, mirrors: Mirrors, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mirrors come from the environment variable, as a user behind a proxy would set them.
    monkeypatch.setenv(fm.ENV_MIRRORS, f"{mirrors.url('missing')}, {mirrors.url('flaky')}")

    target = fm.fetch_dataset(progress=False, backoff=0.0)

    assert target == isolated / "data" / "fashion-mnist"
    for spec in fm.FILES:
        assert mirrors.requests[f"/missing/{spec.gz_name}"] == 1  # 404: not retried
        assert mirrors.requests[f"/flaky/{spec.gz_name}"] == 3  # 503, short read, success
        assert (target / spec.gz_name).read_bytes() == mirrors.files[spec.gz_name]
    assert not [p for p in target.iterdir() if p.name.endswith(".part")]
    assert (target / CACHE_FILENAME).is_file()
    images, labels = fm.load_fashion_mnist("test")
    assert images.shape == (10_000, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_corrupt_download_is_rejected_and_the_next_mirror_used(
    isolated: Path, mirrors: Mirrors
) -> None:
    target = fm.fetch_dataset(
        mirrors=[mirrors.url("corrupt"), mirrors.url("good")], progress=False, backoff=0.0
    )
    assert fm.dataset_checksums(target) == {s.name: s.payload_sha256 for s in fm.FILES}
    for spec in fm.FILES:
        assert mirrors.requests[f"/corrupt/{spec.gz_name}"] == 1  # bad content: not retried


def test_only_corrupt_mirrors_leave_nothing_behind_and_list_every_url(
    isolated: Path, mirrors: Mirrors
) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        fm.fetch_dataset(
            mirrors=[mirrors.url("corrupt"), mirrors.url("missing")],
            progress=False,
            backoff=0.0,
        )
    reasons = {a.place: a.reason for a in info.value.attempts}
    labels = mirrors.url("corrupt") + "t10k-labels-idx1-ubyte.gz"
    images = mirrors.url("corrupt") + "t10k-images-idx3-ubyte.gz"
    assert reasons[labels].startswith("downloaded, but rejected: checksum mismatch")
    assert "gzip stream is truncated" in reasons[images]
    assert reasons[mirrors.url("missing") + "t10k-labels-idx1-ubyte.gz"] == "HTTP 404 Not Found"
    assert len([p for p in reasons if p.startswith("http")]) == 2 * len(fm.FILES)
    assert "network" in str(info.value)
    assert not (isolated / "data" / "fashion-mnist").exists()


def test_timeouts_are_retried_then_reported(
    isolated: Path, mirrors: Mirrors, fashion_mnist
) -> None:
    # Only one small file is missing, so only it is downloaded.
    target = isolated / "partial"
    target.mkdir()
    for spec in fm.FILES[:3]:
        (target / spec.gz_name).write_bytes(fashion_mnist.gz_bytes(spec))
    missing = fm.FILES[3].gz_name

    with pytest.raises(DatasetNotFoundError) as info:
        fm.fetch_dataset(
            target, mirrors=[mirrors.url("slow")], progress=False, timeout=0.2, retries=2, backoff=0
        )
    (attempt,) = [a for a in info.value.attempts if a.place.startswith("http")]
    assert attempt.place.endswith(missing)
    assert "gave up after 2 tries" in attempt.reason
    assert mirrors.requests[f"/slow/{missing}"] == 2

    assert fm.fetch_dataset(target, mirrors=[mirrors.url("good")], progress=False) == target
    assert mirrors.requests[f"/good/{missing}"] == 1
    assert sum(mirrors.requests[f"/good/{s.gz_name}"] for s in fm.FILES) == 1


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens, so connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_an_unreachable_mirror_falls_back_to_the_next(isolated: Path, mirrors: Mirrors) -> None:
    dead = closed_port_url()
    target = fm.fetch_dataset(
        mirrors=[dead, mirrors.url("good")], progress=False, retries=2, backoff=0.0
    )
    assert fm.dataset_checksums(target) == {s.name: s.payload_sha256 for s in fm.FILES}
    assert sum(mirrors.requests[f"/good/{s.gz_name}"] for s in fm.FILES) == len(fm.FILES)


def test_unreachable_mirrors_are_listed_once_each_then_skipped(isolated: Path) -> None:
    dead = closed_port_url()
    with pytest.raises(DatasetNotFoundError) as info:
        fm.fetch_dataset(mirrors=[dead], progress=False, retries=2, backoff=0.0)
    reasons = [a.reason for a in info.value.attempts if a.place.startswith(dead)]
    assert len(reasons) == len(fm.FILES)
    assert "cannot connect" in reasons[0] and "gave up after 2 tries" in reasons[0]
    assert all(r.startswith("skipped") for r in reasons[1:])

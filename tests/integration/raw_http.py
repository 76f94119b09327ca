"""A minimal HTTP/1.1 client on a raw socket, for what httpx cannot do on purpose.

httpx writes a whole request body before it reads the response, and it never trickles bytes:
to see a 413 arrive *while* a body is still streaming, or to play a slowloris client, the
tests need to control every write. Only for 127.0.0.1 test servers.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_ready(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def read_response(sock: socket.socket, timeout: float = 30.0) -> RawResponse:
    """Read one response (Content-Length or close-delimited body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body[:length] if length >= 0 else body)


def stream_body(
    sock: socket.socket, chunks: Iterable[bytes], *, chunked: bool, pause_s: float = 0.0
) -> tuple[int, RawResponse | None]:
    """Send ``chunks`` until the server answers or stops reading; return (bytes sent, answer).

    The server may answer (413, 408) and close while we are still sending: that is the point.
    """
    sent = 0
    try:
        for chunk in chunks:
            if response_ready(sock):
                break
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            sock.sendall(frame)
            sent += len(chunk)
            if pause_s:
                time.sleep(pause_s)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed after answering; read what it said
    try:
        return sent, read_response(sock)
    except (ConnectionError, TimeoutError):
        return sent, None


def multipart_head(boundary: str, field: str = "file", filename: str = "big.png") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()

"""The drain's pieces without a server: the SIGTERM wrapper, Connection: close, 413 discard."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from starlette.types import Message, Receive, Scope, Send

from product_classifier.serving.drain import Drain, install_drain
from product_classifier.serving.middleware import RequestContextMiddleware


@pytest.fixture
def fake_uvicorn_handler() -> Iterator[list[int]]:
    """A Python SIGTERM handler standing in for uvicorn's; records the signals it gets."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    yield received
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_drains_first_then_reaches_the_servers_handler(
    fake_uvicorn_handler: list[int],
) -> None:
    drain = Drain()

    async def scenario() -> tuple[bool, list[int], list[int]]:
        undo = install_drain(drain, 0.2, asyncio.get_running_loop())
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        during = list(fake_uvicorn_handler)
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM does not cut the drain short
        await asyncio.sleep(0.05)
        still_during = list(fake_uvicorn_handler)
        await asyncio.sleep(0.4)
        undo()
        return drain.active, during + still_during, list(fake_uvicorn_handler)

    active, during, after = asyncio.run(scenario())
    assert active
    assert during == []  # the server did not hear of it while draining
    assert after == [signal.SIGTERM]  # then exactly once
    assert signal.getsignal(signal.SIGTERM) is not None


def test_undo_restores_the_servers_handler(fake_uvicorn_handler: list[int]) -> None:
    original = signal.getsignal(signal.SIGTERM)

    async def scenario() -> None:
        undo = install_drain(Drain(), 5.0, asyncio.get_running_loop())
        assert signal.getsignal(signal.SIGTERM) is not original
        undo()

    asyncio.run(scenario())
    assert signal.getsignal(signal.SIGTERM) is original


def test_no_drain_without_a_window_or_a_python_handler() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        before = signal.getsignal(signal.SIGTERM)
        install_drain(Drain(), 0, loop)  # drain_s = 0: uvicorn's shutdown as it was
        assert signal.getsignal(signal.SIGTERM) is before
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            install_drain(Drain(), 5.0, loop)  # nothing to wrap (not under uvicorn)
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        finally:
            signal.signal(signal.SIGTERM, previous)

    asyncio.run(scenario())


# -- the middleware -------------------------------------------------------------------------


async def _ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(
    middleware: RequestContextMiddleware, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[list[Message], int]:
    """Run one request; returns the messages sent and how many body chunks were read."""
    sent: list[Message] = []
    read = 0

    async def receive() -> Message:
        nonlocal read
        read += 1
        if read > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": headers}
    asyncio.run(middleware(scope, receive, send))
    return sent, min(read, len(chunks))


def _headers(messages: list[Message]) -> dict[bytes, bytes]:
    return dict(messages[0]["headers"])


def test_responses_ask_clients_to_reconnect_only_while_draining() -> None:
    drain = Drain()
    middleware = RequestContextMiddleware(_ok_app, max_body_bytes=100, drain=drain)
    assert b"connection" not in _headers(_call(middleware, [], [b""])[0])
    drain.active = True
    assert _headers(_call(middleware, [], [b""])[0])[b"connection"] == b"close"


def _oversized(
    discard_bytes: int, extra: list[tuple[bytes, bytes]]
) -> tuple[int, int, dict[bytes, bytes]]:
    middleware = RequestContextMiddleware(_ok_app, max_body_bytes=10, discard_bytes=discard_bytes)
    chunks = [b"x" * 10] * 5
    headers = [(b"content-length", b"50"), *extra]
    sent, read = _call(middleware, headers, chunks)
    return sent[0]["status"], read, _headers(sent)


def test_an_oversized_declared_body_is_read_and_dropped_before_the_413() -> None:
    status, read, headers = _oversized(discard_bytes=1000, extra=[])
    assert (status, read, headers[b"connection"]) == (413, 5, b"close")


def test_the_413_comes_at_once_past_the_discard_bound_or_for_100_continue() -> None:
    for discard_bytes, extra in [(40, []), (1000, [(b"expect", b"100-continue")])]:
        status, read, headers = _oversized(discard_bytes, extra)
        assert (status, read, headers[b"connection"]) == (413, 0, b"close")

"""Graceful drain on SIGTERM: keep serving for a window, tell keep-alive clients to leave, exit.

An orchestrator (Kubernetes, Compose, systemd) sends SIGTERM and, at about the same time, starts
taking the instance out of its load balancer; that takes a few seconds to reach every client.
uvicorn alone stops listening at once and closes idle keep-alive connections, so whatever is
still routed here in those seconds is refused or reset (a POST is not retried by clients).

So on SIGTERM each worker:

1. flips ``/ready`` to 503 at once (``Drain.active``; the load balancer's cue);
2. keeps answering for ``drain_s`` seconds, every response with ``Connection: close``
   (:class:`RequestContextMiddleware` adds it), so keep-alive clients reconnect, to another
   instance once the balancer has caught up;
3. then hands the signal to uvicorn's own handler: the normal graceful shutdown (in-flight
   requests finish, the lifespan ends, the process exits).

The handler wraps uvicorn's after uvicorn installed it (from the lifespan, in each worker's
main thread). With ``--workers N`` uvicorn's supervisor forwards SIGTERM to every worker, which
drains on its own. SIGINT (Ctrl+C, a developer's terminal) is left to uvicorn: no drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SignalHandler = Callable[[int, FrameType | None], Any]


def nothing_to_undo() -> None:
    """What :func:`install_drain` returns where it installed nothing."""


class Drain:
    """Whether this worker is draining; read on every response, so a plain attribute."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False


def install_drain(
    drain: Drain, drain_s: float, loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    """Wrap the current SIGTERM handler (uvicorn's); return a function that undoes it.

    Does nothing (and returns a no-op) where there is no Python SIGTERM handler to wrap or
    signals cannot be set: outside the main thread (a test client's portal thread), or under a
    server that handles signals itself.
    """
    if drain_s <= 0 or threading.current_thread() is not threading.main_thread():
        return nothing_to_undo
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return nothing_to_undo
    uvicorn_handler: SignalHandler = previous
    timer: list[asyncio.TimerHandle] = []

    def finish(signum: int) -> None:
        logger.info("drain over after %g s: shutting down", drain_s)
        uvicorn_handler(signum, None)

    def start(signum: int) -> None:  # on the event loop, not in the signal handler
        timer.append(loop.call_later(drain_s, finish, signum))

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if drain.active:  # a second SIGTERM: the drain is already under way
            return
        drain.active = True
        # Logging or touching the loop's timers from inside a signal handler could interrupt
        # the loop mid-operation: hand over to the loop, which is thread- and signal-safe.
        loop.call_soon_threadsafe(_log_start, drain_s)
        loop.call_soon_threadsafe(start, signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    def uninstall() -> None:
        for handle in timer:
            handle.cancel()
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, uvicorn_handler)

    return uninstall


def _log_start(drain_s: float) -> None:
    logger.info("SIGTERM: draining for %g s (/ready answers 503, responses close)", drain_s)

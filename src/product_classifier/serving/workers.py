"""Worker processes that each listen on a socket of their own (``SO_REUSEPORT``).

uvicorn's supervisor binds one socket and every worker accepts from it. The worker that wakes
first takes every connection waiting (uvloop accepts until the queue is empty), so a client
that opens a few keep-alive connections at once (an import job, a load generator's users)
often lands all of them on one worker, and the other core idles: ``make loadtest``'s batch
scenario (4 connections) ran at 50% of the machine's CPU in two runs in a row.

With ``SO_REUSEPORT`` each worker listens on its own socket, bound to the same address, and
the kernel hashes each new connection to one of them, whatever the timing (Linux; what nginx's
``reuseport`` and gunicorn's ``--reuse-port`` do). Everything else stays uvicorn's supervisor:
health checks, signal forwarding (and so the drain, ``serving/drain.py``), and restarting a
dead worker, which binds its socket again. A worker that shuts down closes its socket, which
leaves the kernel's group, so no connection is routed to a worker that is gone.
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess, multiprocess

logger = logging.getLogger("uvicorn.error")


def own_sockets_possible(workers: int, port: int) -> bool:
    """Whether ``workers`` can listen on sockets of their own: Linux, more than one worker,
    and a TCP port chosen in advance (port 0 would give each worker a different one)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(socket, "SO_REUSEPORT")
        and workers > 1
        and port != 0
    )


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket for ``host:port`` (not yet listening: the worker's server does that)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class OwnSocketProcess(multiprocess.Process):
    """uvicorn's worker process, serving a socket it binds itself instead of the supervisor's."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        try:
            own = listening_socket(self.config.host, self.config.port, reuse_port=True)
        except OSError as exc:
            logger.error("cannot listen on %s:%s: %s", self.config.host, self.config.port, exc)
            sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting in a loop
        super().target([own])


def run_workers(config: Config) -> None:
    """``uvicorn.run``'s multi-worker path, each worker on its own ``SO_REUSEPORT`` socket.

    First a plain bind, which fails if anything listens on the address, even another instance
    with ``SO_REUSEPORT``, so that two services never share a port by accident; it exits as
    uvicorn's own bind does (the error logged, status 1).
    """
    try:
        listening_socket(config.host, config.port, reuse_port=False).close()
    except OSError as exc:
        logger.error(exc)
        sys.exit(1)
    # The supervisor creates (and re-creates) its workers through this module name.
    multiprocess.Process = OwnSocketProcess  # type: ignore[misc]
    Multiprocess(config, sockets=[]).run()

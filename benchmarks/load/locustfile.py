"""Locust users for the product-classifier API.

Four kinds of traffic, all with real Fashion-MNIST test images (see ``payloads``): 28x28 PNGs
to ``/v1/predict``, ~600x600 catalog JPEGs to ``/v1/predict``, batches of PNGs to
``/v1/predict/batch``, and a mix of the three. Bodies are pre-encoded multipart payloads, so the
load generator's CPU goes into sending requests, not into encoding images.

The scripted runner (``python -m benchmarks load``) builds user classes with
:func:`make_user` through ``driver.py``. The module-level classes are for running Locust by hand::

    locust -f benchmarks/load/locustfile.py --headless \\
        -u 64 -r 64 -t 30s --host http://127.0.0.1:8000 PngUser

``LOADTEST_RATE`` (requests/s per user, 0 = as fast as possible) and ``LOADTEST_BATCH_FILES``
tune those classes.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import gevent
from locust import FastHttpUser, constant, task

from benchmarks.load.payloads import CONTENT_TYPE, PayloadPool, build_pool

PREDICT_PATH = "/v1/predict"
BATCH_PATH = "/v1/predict/batch"
KINDS = ("png", "jpeg", "batch")
# The mix: mostly small crops, some catalog photos, the odd bulk upload.
MIX_WEIGHTS = {"png": 7, "jpeg": 2, "batch": 1}
_HEADERS = {"Content-Type": CONTENT_TYPE}


@cache
def pool() -> PayloadPool:
    """Built on first use (never at import), once per process."""
    return build_pool(batch_files=int(os.environ.get("LOADTEST_BATCH_FILES", "64")))


def _send(user: FastHttpUser, kind: str) -> None:
    bodies = getattr(pool(), kind)
    path = BATCH_PATH if kind == "batch" else PREDICT_PATH
    # Not for security: picks the traffic mix (bandit B311).
    user.client.post(path, data=random.choice(bodies), headers=_HEADERS, name=kind)  # nosec B311


def _paced(rate_per_user: float) -> Callable[[FastHttpUser], float]:
    """Wait until this user's next slot: one request every ``1 / rate`` s on a fixed grid.

    Unlike Locust's ``constant_throughput``, the grid starts at a random phase (set by
    :func:`_start_paced`). ``constant_throughput`` anchors each user's grid to the moment the
    user was created, Locust creates them within milliseconds of each other, and a sleep in
    ``on_start`` does not move the anchor: 50 users at 2 req/s arrived as a burst of 50 every
    500 ms (seen in the server's access log), so "100 req/s" measured queueing behind bursts
    instead of a steady stream. A slot missed by a slow response is skipped, not made up with
    a burst.
    """
    period = 1.0 / rate_per_user

    def wait(user: FastHttpUser) -> float:
        now = time.perf_counter()
        user._next_slot = max(user._next_slot + period, now)  # type: ignore[attr-defined]
        return float(user._next_slot - now)  # type: ignore[attr-defined]

    return wait


def _start_paced(user: FastHttpUser, rate_per_user: float) -> None:
    if rate_per_user > 0:
        # Not for security: staggers the users' start (bandit B311).
        gevent.sleep(random.uniform(0.0, 1.0 / rate_per_user))  # nosec B311
        user._next_slot = time.perf_counter()  # type: ignore[attr-defined]


def _wait_time(rate_per_user: float) -> Callable[..., float]:
    return _paced(rate_per_user) if rate_per_user > 0 else constant(0)


def make_user(weights: dict[str, int], rate_per_user: float = 0.0) -> type[FastHttpUser]:
    """A user class sending ``weights``-weighted requests, ``rate_per_user`` req/s (0: flat out)."""
    unknown = set(weights) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown request kinds {sorted(unknown)}; known: {KINDS}")
    tasks: dict[Callable[..., Any], int] = {}
    for kind, weight in weights.items():
        if weight > 0:

            def send(user: FastHttpUser, kind: str = kind) -> None:
                _send(user, kind)

            tasks[send] = weight
    name = "".join(k.title() for k in weights) + "User"

    def on_start(user: FastHttpUser) -> None:
        _start_paced(user, rate_per_user)

    attrs: dict[str, Any] = {
        "tasks": tasks,
        "on_start": on_start,
        "wait_time": _wait_time(rate_per_user),
        # Generous: at saturation a request may sit in the queue; errors should be real errors.
        "network_timeout": 60.0,
        "connection_timeout": 10.0,
    }
    return type(name, (FastHttpUser,), attrs)


def _env_rate() -> float:
    return float(os.environ.get("LOADTEST_RATE", "0"))


class _EnvPacedUser(FastHttpUser):
    abstract = True
    wait_time = _wait_time(_env_rate())

    def on_start(self) -> None:
        _start_paced(self, _env_rate())


class PngUser(_EnvPacedUser):
    @task
    def png(self) -> None:
        _send(self, "png")


class JpegUser(_EnvPacedUser):
    @task
    def jpeg(self) -> None:
        _send(self, "jpeg")


class BatchUser(_EnvPacedUser):
    @task
    def batch(self) -> None:
        _send(self, "batch")


class MixUser(_EnvPacedUser):
    @task(MIX_WEIGHTS["png"])
    def png(self) -> None:
        _send(self, "png")

    @task(MIX_WEIGHTS["jpeg"])
    def jpeg(self) -> None:
        _send(self, "jpeg")

    @task(MIX_WEIGHTS["batch"])
    def batch(self) -> None:
        _send(self, "batch")

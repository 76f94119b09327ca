"""Locust users for the product-classifier API.

Four kinds of traffic, all with real Fashion-MNIST test images (see ``payloads``): 28x28 PNGs
to ``/v1/predict``, ~600x600 catalog JPEGs to ``/v1/predict``, batches of PNGs to
``/v1/predict/batch``, and a mix of the three. Bodies are pre-encoded multipart payloads, so the
load generator's CPU goes into sending requests, not into encoding images.

The scripted runner (``product-classifier benchmark load``) builds user classes with
:func:`make_user` through ``driver.py``. The module-level classes are for running Locust by hand::

    locust -f src/product_classifier/benchmarks/load/locustfile.py --headless \\
        -u 64 -r 64 -t 30s --host http://127.0.0.1:8000 PngUser

``LOADTEST_RATE`` (requests/s per user, 0 = as fast as possible) and ``LOADTEST_BATCH_FILES``
tune those classes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from functools import cache
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, task

from product_classifier.benchmarks.load.payloads import CONTENT_TYPE, PayloadPool, build_pool

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
    user.client.post(path, data=random.choice(bodies), headers=_HEADERS, name=kind)


def _wait_time(rate_per_user: float) -> Callable[..., float]:
    return constant_throughput(rate_per_user) if rate_per_user > 0 else constant(0)


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
    attrs: dict[str, Any] = {
        "tasks": tasks,
        "wait_time": _wait_time(rate_per_user),
        # Generous: at saturation a request may sit in the queue; errors should be real errors.
        "network_timeout": 60.0,
        "connection_timeout": 10.0,
    }
    return type(name, (FastHttpUser,), attrs)


def _env_rate() -> float:
    return float(os.environ.get("LOADTEST_RATE", "0"))


class PngUser(FastHttpUser):
    wait_time = _wait_time(_env_rate())

    @task
    def png(self) -> None:
        _send(self, "png")


class JpegUser(FastHttpUser):
    wait_time = _wait_time(_env_rate())

    @task
    def jpeg(self) -> None:
        _send(self, "jpeg")


class BatchUser(FastHttpUser):
    wait_time = _wait_time(_env_rate())

    @task
    def batch(self) -> None:
        _send(self, "batch")


class MixUser(FastHttpUser):
    wait_time = _wait_time(_env_rate())

    @task(MIX_WEIGHTS["png"])
    def png(self) -> None:
        _send(self, "png")

    @task(MIX_WEIGHTS["jpeg"])
    def jpeg(self) -> None:
        _send(self, "jpeg")

    @task(MIX_WEIGHTS["batch"])
    def batch(self) -> None:
        _send(self, "batch")

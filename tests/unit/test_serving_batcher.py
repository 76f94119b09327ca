"""MicroBatcher: batching, ordering, overload, failure isolation and draining on stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest

from product_classifier.inference.batcher import MicroBatcher
from product_classifier.inference.errors import BatcherClosedError, OverloadedError


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def item(value: float) -> np.ndarray:
    return np.full((1, 1, 28, 28), value, dtype=np.float32)


class RecordingModel:
    """Returns each row's first pixel (so results can be matched to inputs); logs batch sizes."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batch_sizes: list[int] = []
        self.gate = gate

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        self.batch_sizes.append(len(batch))
        return batch[:, 0, 0, :2].copy()


def test_concurrent_requests_share_one_model_call() -> None:
    model = RecordingModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=50)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict(item(i)) for i in range(10)))
        finally:
            await batcher.stop()

    results = run(scenario())
    assert model.batch_sizes == [10]
    assert [float(r[0]) for r in results] == list(range(10))  # each caller gets its own row


def test_batches_never_exceed_max_batch_size() -> None:
    model = RecordingModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=20)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict(item(i)) for i in range(10)))
        finally:
            await batcher.stop()

    results = run(scenario())
    assert model.batch_sizes == [4, 4, 2]
    assert [float(r[0]) for r in results] == list(range(10))


def test_a_full_batch_does_not_wait_for_the_timer() -> None:
    model = RecordingModel()

    async def scenario() -> float:
        batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=5000)
        await batcher.start()
        try:
            start = time.perf_counter()
            await asyncio.gather(*(batcher.predict(item(i)) for i in range(4)))
            return time.perf_counter() - start
        finally:
            await batcher.stop()

    assert run(scenario()) < 2.0
    assert model.batch_sizes == [4]


def test_overload_raises_immediately_and_admitted_requests_still_finish() -> None:
    gate = threading.Event()
    model = RecordingModel(gate)

    async def scenario() -> tuple[float, list[np.ndarray]]:
        batcher = MicroBatcher(model, max_batch_size=1, max_wait_ms=0, queue_size=2)
        await batcher.start()
        try:
            first = batcher.submit(item(0))
            await asyncio.sleep(0.05)  # the worker is now blocked inside the model call
            queued = [batcher.submit(item(1)), batcher.submit(item(2))]
            start = time.perf_counter()
            with pytest.raises(OverloadedError, match="queue is full"):
                batcher.submit(item(3))
            elapsed = time.perf_counter() - start
            gate.set()
            return elapsed, await asyncio.gather(first, *queued)
        finally:
            gate.set()
            await batcher.stop()

    elapsed, results = run(scenario())
    assert elapsed < 0.05
    assert [float(r[0]) for r in results] == [0, 1, 2]


def test_submit_many_is_all_or_nothing() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(RecordingModel(), max_batch_size=8, max_wait_ms=1000, queue_size=3)
        await batcher.start()
        try:
            with pytest.raises(OverloadedError):
                batcher.submit_many([item(i) for i in range(4)])
            assert batcher.queued == 0
            futures = batcher.submit_many([item(i) for i in range(3)])
            assert batcher.queued == 3
        finally:
            await batcher.stop()
        assert all(f.done() for f in futures)

    run(scenario())


def test_stop_drains_queued_requests_without_waiting_for_the_timer() -> None:
    model = RecordingModel()

    async def scenario() -> tuple[list[np.ndarray], float]:
        batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=10_000)
        await batcher.start()
        futures = [batcher.submit(item(i)) for i in range(5)]
        await asyncio.sleep(0)  # the worker is now waiting for the batch to fill
        start = time.perf_counter()
        await batcher.stop()
        elapsed = time.perf_counter() - start
        with pytest.raises(BatcherClosedError):
            batcher.submit(item(9))
        return [f.result() for f in futures], elapsed

    results, elapsed = run(scenario())
    assert elapsed < 2.0
    assert [float(r[0]) for r in results] == list(range(5))
    assert sum(model.batch_sizes) == 5


def test_submit_before_start_is_refused() -> None:
    batcher = MicroBatcher(RecordingModel())
    with pytest.raises(BatcherClosedError):
        batcher.submit(item(0))


def test_model_failure_fails_that_batch_only() -> None:
    calls = {"n": 0}

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return batch[:, 0, 0, :2].copy()

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(flaky, max_wait_ms=0)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="boom"):
                await batcher.predict(item(1))
            return await batcher.predict(item(2))  # the worker survived
        finally:
            await batcher.stop()

    assert float(run(scenario())[0]) == 2.0


def test_cancelled_requests_are_not_sent_to_the_model() -> None:
    model = RecordingModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=50)
        await batcher.start()
        try:
            futures = [batcher.submit(item(i)) for i in range(3)]
            futures[1].cancel()
            await asyncio.gather(futures[0], futures[2])
        finally:
            await batcher.stop()

    run(scenario())
    assert model.batch_sizes == [2]


def test_wrong_item_shape_is_rejected_at_submit() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(RecordingModel())
        await batcher.start()
        try:
            with pytest.raises(ValueError, match="shape"):
                batcher.submit(np.zeros((2, 1, 28, 28), dtype=np.float32))
        finally:
            await batcher.stop()

    run(scenario())


@pytest.mark.parametrize(
    "kwargs", [{"max_batch_size": 0}, {"queue_size": 0}, {"max_wait_ms": -1.0}]
)
def test_invalid_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(RecordingModel(), **kwargs)

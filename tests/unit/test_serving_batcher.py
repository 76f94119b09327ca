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


# -- adaptive dispatch ----------------------------------------------------------------------
# These tests decide nothing by the clock: a GatedModel call ends only when the test says so,
# and a batcher that waited for its timer would run into run()'s 10 s limit instead.


class GatedModel:
    """Each call records its batch (first pixel of each row), then waits for ``release``."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.inputs: list[np.ndarray] = []
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append([float(v) for v in batch[:, 0, 0, 0]])
        self.inputs.append(batch)
        self.started.release()
        assert self.release.wait(10), "test never released the model"
        return batch[:, 0, 0, :2].copy()


async def started(model: GatedModel, count: int = 1) -> None:
    for _ in range(count):
        while not model.started.acquire(blocking=False):
            await asyncio.sleep(0.001)


async def spin(turns: int = 20) -> None:
    """Let the event loop run everything that is ready (no timer can fire: none is due)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def test_a_lone_item_goes_to_an_idle_model_without_waiting_for_company() -> None:
    model = RecordingModel()

    async def scenario() -> np.ndarray:
        # A minute of allowed company wait: only dispatch-at-once answers within run()'s 10 s.
        batcher = MicroBatcher(model, max_wait_ms=60_000, concurrency=2)
        await batcher.start()
        try:
            return await batcher.predict(item(7))
        finally:
            await batcher.stop()

    assert float(run(scenario())[0]) == 7.0
    assert model.batch_sizes == [1]


def test_items_queued_while_the_slot_is_busy_form_capped_batches_in_order() -> None:
    model = GatedModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=4, concurrency=1)
        await batcher.start()
        try:
            first = batcher.submit(item(0))
            await started(model)
            backlog = [batcher.submit(item(i)) for i in range(1, 11)]
            await spin()
            assert model.calls == [[0.0]], "a batch started while the only slot was busy"
            model.release.set()
            return list(await asyncio.gather(first, *backlog))
        finally:
            model.release.set()
            await batcher.stop()

    results = run(scenario())
    assert [float(r[0]) for r in results] == list(range(11))
    assert model.calls == [[0.0], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0]]


def test_hold_for_company_only_while_another_call_runs_and_until_that_call_ends() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=60_000, concurrency=2)
        await batcher.start()
        try:
            first = batcher.submit(item(0))  # idle model: dispatched at once
            await started(model)
            held = [batcher.submit(item(1)), batcher.submit(item(2))]
            await spin()
            # Slot 2 is free, but slot 1 runs: the two wait for company...
            assert model.calls == [[0.0]]
            model.release.set()  # ...until the running call ends and nothing runs any more.
            await asyncio.gather(first, *held)
        finally:
            model.release.set()
            await batcher.stop()

    run(scenario())
    # Then the two free slots share them.
    assert model.calls == [[0.0], [1.0], [2.0]]


def test_held_items_leave_when_their_age_reaches_max_wait_even_if_the_model_is_busy() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=1, concurrency=2)
        await batcher.start()
        try:
            first = batcher.submit(item(0))
            await started(model)
            second = batcher.submit(item(1))
            await started(model)  # the age cap sent it to slot 2 while slot 1 still runs
            assert model.calls == [[0.0], [1.0]]
            model.release.set()
            await asyncio.gather(first, second)
        finally:
            model.release.set()
            await batcher.stop()

    run(scenario())


def test_a_held_batch_leaves_as_soon_as_it_is_full() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=3, max_wait_ms=60_000, concurrency=2)
        await batcher.start()
        try:
            first = batcher.submit(item(0))
            await started(model)
            full = [batcher.submit(item(i)) for i in (1, 2, 3)]
            await started(model)  # size cap reached: no need to wait for slot 1
            assert model.calls == [[0.0], [1.0, 2.0, 3.0]]
            model.release.set()
            await asyncio.gather(first, *full)
        finally:
            model.release.set()
            await batcher.stop()

    run(scenario())


# -- deadlines, failures, supervision -------------------------------------------------------


def test_a_hung_model_call_times_out_its_items_and_the_queue_behind_it() -> None:
    from product_classifier.inference.errors import InferenceTimeoutError

    model = GatedModel()
    expired: list[int] = []

    async def scenario() -> None:
        batcher = MicroBatcher(model, concurrency=1, timeout_s=0.05)
        batcher.on_timeout = expired.append
        await batcher.start()
        try:
            running = batcher.submit(item(0))
            await started(model)
            queued = batcher.submit(item(1))
            for fut in (running, queued):
                with pytest.raises(InferenceTimeoutError):
                    await fut
            assert batcher.stalled and not batcher.healthy
            assert "running for over" in (batcher.health_problem() or "")
            model.release.set()  # the model comes back: healthy again, and it serves
            assert float((await batcher.predict(item(2)))[0]) == 2.0
            assert batcher.healthy
        finally:
            model.release.set()
            await batcher.stop()

    run(scenario())
    assert sum(expired) == 2
    assert model.calls == [[0.0], [2.0]]  # the expired queued item never reached the model


def test_a_failing_metrics_hook_still_answers_the_batch() -> None:
    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(RecordingModel())

        def broken(size: int, seconds: float) -> None:
            raise RuntimeError("hook bug")

        batcher.on_batch = broken
        await batcher.start()
        try:
            await batcher.predict(item(1))
            return await batcher.predict(item(2))
        finally:
            await batcher.stop()

    assert float(run(scenario())[0]) == 2.0


@pytest.mark.parametrize("how", ["exception", "cancelled"])
def test_a_dead_worker_is_reported_restarted_and_serves_what_was_queued(how: str) -> None:
    model = RecordingModel()
    events: list[str] = []

    async def scenario() -> tuple[list[np.ndarray], float]:
        # A minute of restart delay: the dead state lasts until the test restarts it itself.
        batcher = MicroBatcher(model, restart_delay_s=60.0)
        died = asyncio.Event()

        def on_died(error: BaseException | None) -> None:
            events.append(f"died:{error!r}")
            died.set()

        batcher.on_worker_died = on_died
        batcher.on_worker_restarted = lambda: events.append("restarted")
        await batcher.start()
        try:
            assert batcher.healthy
            if how == "cancelled":
                assert batcher._worker is not None
                batcher._worker.cancel()
            else:
                dispatch = batcher._dispatch

                def crash(*args: Any) -> None:
                    batcher._dispatch = dispatch  # type: ignore[method-assign]
                    raise RuntimeError("worker bug")

                batcher._dispatch = crash  # type: ignore[method-assign]
                queued = batcher.submit(item(1))  # popped by nobody: the worker dies first
            await died.wait()
            assert not batcher.healthy
            assert "worker died" in (batcher.health_problem() or "")
            with pytest.raises(BatcherClosedError, match="restarting"):
                batcher.submit(item(9))  # refused fast (503) while there is no worker
            assert batcher._restart is not None  # the scheduled restart, run now
            batcher._restart.cancel()
            batcher._restart_worker()
            assert batcher.healthy
            results = [await batcher.predict(item(2))]
            if how == "exception":
                results.insert(0, await queued)
            return results, batcher.worker_restarts
        finally:
            await batcher.stop()

    results, restarts = run(scenario())
    assert restarts == 1
    assert [float(r[0]) for r in results] == ([1.0, 2.0] if how == "exception" else [2.0])
    assert len(events) == 2 and events[1] == "restarted"
    assert events[0] == ("died:RuntimeError('worker bug')" if how == "exception" else "died:None")


def test_a_cancelled_batch_fails_its_futures_and_keeps_its_buffer_out_of_the_pool() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, concurrency=1)
        await batcher.start()
        try:
            fut = batcher.submit(item(1))
            await started(model)
            (task,) = list(batcher._in_flight)
            task.cancel()
            with pytest.raises(BatcherClosedError):
                await fut
            await spin()
            # The model thread still holds (and could still write) that buffer.
            in_use = model.inputs[0].base
            assert in_use is not None
            assert all(buffer is not in_use for buffer in batcher._buffers)
            model.release.set()
            # The next batch gets a fresh buffer and is served.
            assert float((await batcher.predict(item(2)))[0]) == 2.0
        finally:
            model.release.set()
            await batcher.stop()

    run(scenario())


def test_stop_with_a_hung_model_gives_up_and_leaves_no_future_pending() -> None:
    model = GatedModel()

    async def scenario() -> list[asyncio.Future[np.ndarray]]:
        batcher = MicroBatcher(model, concurrency=1)
        await batcher.start()
        futures = [batcher.submit(item(0))]
        await started(model)
        futures.append(batcher.submit(item(1)))
        await batcher.stop(timeout_s=0.05)
        return futures

    try:
        futures = run(scenario())
    finally:
        model.release.set()
    for fut in futures:
        assert fut.done()
        assert isinstance(fut.exception(), BatcherClosedError)

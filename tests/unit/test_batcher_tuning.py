"""MicroBatcher tuning knobs: concurrent model calls and batching while the model is busy.

The model here is a stand-in that blocks on events, so every test controls exactly when a model
call finishes; nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest

from product_classifier.inference.batcher import MicroBatcher


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def item(value: float) -> np.ndarray:
    return np.full((1, 1, 28, 28), value, dtype=np.float32)


class GatedModel:
    """Each call records its batch, signals that it started and waits for ``release``."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.running = 0
        self.max_running = 0
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls.append([float(v) for v in batch[:, 0, 0, 0]])
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.started.release()
        try:
            assert self.release.wait(10), "test never released the model"
            return batch[:, 0, 0, :2].copy()
        finally:
            with self._lock:
                self.running -= 1


async def wait_started(model: GatedModel, count: int = 1) -> None:
    for _ in range(count):
        while not model.started.acquire(blocking=False):
            await asyncio.sleep(0.001)


def test_concurrency_runs_batches_side_by_side_and_keeps_rows_with_their_callers() -> None:
    model = GatedModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=0, concurrency=2)
        await batcher.start()
        try:
            first = batcher.submit(item(0))
            await wait_started(model)  # slot 1 busy with [0]
            second = batcher.submit(item(1))
            await wait_started(model)  # slot 2 busy with [1]: both calls run at once
            rest = [batcher.submit(item(i)) for i in range(2, 7)]
            await asyncio.sleep(0.05)
            assert len(model.calls) == 2, "a third batch started while both slots were busy"
            model.release.set()
            return list(await asyncio.gather(first, second, *rest))
        finally:
            await batcher.stop()

    results = run(scenario())
    assert [float(r[0]) for r in results] == list(range(7))
    assert model.max_running == 2
    assert model.calls[:2] == [[0.0], [1.0]]
    # What queued while both slots were busy went out in two batches, in arrival order (4+1 or
    # 3+2, depending on whether one or both slots were free when the worker looked).
    later = sorted(model.calls[2:])
    assert len(later) == 2 and all(len(batch) <= 4 for batch in later)
    assert [v for batch in later for v in batch] == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_waiting_items_are_shared_among_free_slots() -> None:
    """64 connections and 2 cores must not become one 64-item batch and an idle core."""
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=0, concurrency=2)
        await batcher.start()
        try:
            futures = batcher.submit_many([item(i) for i in range(6)])
            await wait_started(model, 2)
            model.release.set()
            await asyncio.gather(*futures)
        finally:
            await batcher.stop()

    run(scenario())
    assert sorted(model.calls) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert model.max_running == 2


def test_concurrency_one_never_overlaps_model_calls() -> None:
    model = GatedModel()
    model.release.set()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=2, max_wait_ms=0, concurrency=1)
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.predict(item(i)) for i in range(9)))
        finally:
            await batcher.stop()

    run(scenario())
    assert model.max_running == 1
    assert sum(len(c) for c in model.calls) == 9


def test_requests_queued_during_a_model_call_form_one_batch_without_waiting() -> None:
    """No batching timer at all (max_wait_ms=0): a busy model still batches the backlog."""
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=0, concurrency=1)
        await batcher.start()
        try:
            first = batcher.submit(item(0))
            await wait_started(model)
            backlog = [batcher.submit(item(i)) for i in range(1, 11)]
            model.release.set()
            await asyncio.gather(first, *backlog)
        finally:
            await batcher.stop()

    run(scenario())
    assert model.calls == [[0.0], [float(i) for i in range(1, 11)]]


def test_stop_waits_for_every_running_batch() -> None:
    model = GatedModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=1, max_wait_ms=0, concurrency=3)
        await batcher.start()
        futures = [batcher.submit(item(i)) for i in range(5)]
        await wait_started(model, 3)
        stopping = asyncio.ensure_future(batcher.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done(), "stop() returned while batches were still running"
        model.release.set()
        await stopping
        return [f.result() for f in futures]  # all resolved before stop() returned

    results = run(scenario())
    assert [float(r[0]) for r in results] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert model.max_running == 3


def test_a_failing_call_does_not_block_the_other_slot() -> None:
    calls: list[int] = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if batch[0, 0, 0, 0] < 0:
            raise RuntimeError("boom")
        return batch[:, 0, 0, :2].copy()

    async def scenario() -> tuple[BaseException | None, np.ndarray]:
        batcher = MicroBatcher(flaky, max_batch_size=1, max_wait_ms=0, concurrency=2)
        await batcher.start()
        try:
            bad, good = batcher.submit(item(-1)), batcher.submit(item(5))
            results = await asyncio.gather(bad, good, return_exceptions=True)
            assert isinstance(results[1], np.ndarray)
            error = results[0] if isinstance(results[0], BaseException) else None
            return error, results[1]
        finally:
            await batcher.stop()

    error, good = run(scenario())
    assert isinstance(error, RuntimeError)
    assert float(good[0]) == 5.0


def _fake_cores(monkeypatch: pytest.MonkeyPatch, cores: int) -> None:
    """``cores`` usable CPUs by affinity and no cgroup quota, whatever this host has."""
    from product_classifier import resources

    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setattr(resources, "cgroup_cpu_quota", lambda *_args: None)


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_must_be_positive(concurrency: int) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        MicroBatcher(lambda x: x, concurrency=concurrency)


@pytest.mark.parametrize(
    ("cores", "overrides", "expected"),
    [
        (2, {}, 1),  # auto: two workers, one model call each
        (2, {"workers": 1}, 2),  # one worker, one thread per call: a model call per core
        (2, {"workers": 2}, 1),
        (8, {"workers": 2}, 4),
        (4, {"workers": 1, "intra_op_threads": 2}, 2),
        (4, {"workers": 1, "intra_op_threads": 0}, 1),  # onnxruntime already uses every core
        (1, {"workers": 4}, 1),  # never below one
        (2, {"model_concurrency": 3}, 3),  # explicit wins
    ],
)
def test_auto_model_concurrency_shares_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, overrides: dict[str, int], expected: int
) -> None:
    from product_classifier.serving import settings as settings_mod

    _fake_cores(monkeypatch, cores)
    for key in list(os.environ):
        if key.startswith(settings_mod.ENV_PREFIX):
            monkeypatch.delenv(key)
    assert settings_mod.load_settings(**overrides).batch_concurrency == expected


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [(1, 0, 1), (2, 0, 2), (16, 0, 4), (16, 6, 6), (2, 3, 3)],
)
def test_auto_workers_are_one_per_core_up_to_four(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, expected: int
) -> None:
    from product_classifier.serving import settings as settings_mod

    _fake_cores(monkeypatch, cores)
    for key in list(os.environ):
        if key.startswith(settings_mod.ENV_PREFIX):
            monkeypatch.delenv(key)
    assert settings_mod.load_settings(workers=workers).resolved_workers == expected

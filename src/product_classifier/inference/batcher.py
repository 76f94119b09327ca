"""An asyncio micro-batcher: many concurrent single-image requests, one model call.

Requests append an item to a bounded queue and await a future. A single worker task takes up to
``max_batch_size`` items (after an idle spell it waits at most ``max_wait_ms`` for the batch to
fill), runs ONE predict call in a dedicated executor thread (onnxruntime releases the GIL, so
the event loop keeps serving) and resolves the futures. While that call runs, new requests pile
up and form the next batch, so under load the wait is never paid. A full queue fails fast with
OverloadedError instead of growing latency.

Items are [1, C, S, S] arrays (``item_shape``; Fashion-MNIST models: [1, 1, 28, 28]), or
anything ``prepare_fn`` turns into one: the service passes
the uploaded bytes and its preprocessing, so decoding runs in the batch's thread, off the event
loop, and a request costs one thread hop instead of two (a separate decode pool). An item that
fails to prepare fails alone; the rest of its batch still runs.

``concurrency`` > 1 lets that many batches run at once, each in its own executor thread (an
onnxruntime session may be run from several threads): one process then keeps several cores busy
with single-threaded model calls, which on a small CPU beats both intra-op threads (their
synchronisation costs ~1.5x CPU per image) and extra worker processes (each one a full copy of
the interpreter, libraries and model). A batch is only formed when a slot is free, so while all
slots are busy requests keep piling up into the next, bigger batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from product_classifier.constants import IMAGE_SIZE
from product_classifier.inference.errors import BatcherClosedError, OverloadedError

logger = logging.getLogger(__name__)

ITEM_SHAPE = (1, 1, IMAGE_SIZE, IMAGE_SIZE)  # a Fashion-MNIST model's item, the default
PredictFn = Callable[[np.ndarray], np.ndarray]
PrepareFn = Callable[[Any], np.ndarray]
_Item = tuple[Any, "asyncio.Future[np.ndarray]"]


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class MicroBatcher:
    """Collects single items into batches for ``predict_fn`` (rows in, rows out, same order)."""

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        prepare_fn: PrepareFn | None = None,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        queue_size: int = 1024,
        concurrency: int = 1,
        item_shape: tuple[int, ...] = ITEM_SHAPE,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_ms < 0 or concurrency < 1:
            raise ValueError(
                "max_batch_size, queue_size and concurrency must be >= 1, max_wait_ms >= 0"
            )
        self._predict_fn = predict_fn
        self._prepare_fn = prepare_fn
        self.item_shape = tuple(item_shape)
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.concurrency = concurrency
        self._pending: collections.deque[_Item] = collections.deque()
        # One input buffer per running batch, reused (a free list; at most ``concurrency``).
        self._buffers: list[np.ndarray] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_free: asyncio.Future[None] | None = None  # worker waiting for a model slot
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Future[None] | None = None  # worker idle, queue empty
        self._fill: asyncio.Future[None] | None = None  # worker waiting for a fuller batch
        self._accepting = False
        self._stopping = False
        # Counters for /v1/model and tests; plain ints, the loop is single-threaded.
        self.batches_run = 0
        self.items_run = 0
        # Hook for metrics: (batch size, seconds of the model call) after each successful call.
        self.on_batch: Callable[[int, float], None] | None = None

    @property
    def running(self) -> bool:
        return self._accepting

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("batcher already started")
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="onnx-batch"
        )
        self._stopping = False
        self._accepting = True
        self._worker = self._loop.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Refuse new items, finish every queued one, then stop the worker and its thread."""
        self._accepting = False
        self._stopping = True
        _wake(self._wakeup)
        _wake(self._fill)
        if self._worker is not None:
            try:
                await self._worker
            finally:
                self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def submit(self, item: Any) -> asyncio.Future[np.ndarray]:
        """Queue one item ([1, 1, 28, 28] float32, or ``prepare_fn``'s input); the future
        resolves to its output row, or raises what ``prepare_fn`` raised for it."""
        return self.submit_many((item,))[0]

    def submit_many(self, items: Sequence[Any]) -> list[asyncio.Future[np.ndarray]]:
        """Queue several items, all or none (a batch request is admitted whole or refused)."""
        if not self._accepting or self._loop is None:
            raise BatcherClosedError("the model is not accepting requests (starting or stopping)")
        if len(self._pending) + len(items) > self.queue_size:
            raise OverloadedError(
                f"inference queue is full ({len(self._pending)}/{self.queue_size} queued)"
            )
        if self._prepare_fn is None:
            for item in items:
                if item.shape != self.item_shape:
                    raise ValueError(
                        f"expected an item of shape {self.item_shape}, got {item.shape}"
                    )
        create_future = self._loop.create_future
        futures = [create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        if self._wakeup is not None:
            _wake(self._wakeup)
        elif self._fill is not None and len(self._pending) >= self.max_batch_size:
            _wake(self._fill)
        return futures

    async def predict(self, item: Any) -> np.ndarray:
        return await self.submit(item)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            if not pending:
                if self._stopping:
                    break
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                if (
                    len(pending) < self.max_batch_size
                    and self.max_wait_s > 0
                    and not self._stopping
                    and len(self._in_flight) < self.concurrency
                ):
                    # First item after an idle spell: give concurrent requests a moment to
                    # join it. Items that queued up during a model call skip this wait.
                    self._fill = loop.create_future()
                    timer = loop.call_later(self.max_wait_s, _wake, self._fill)
                    try:
                        await self._fill
                    finally:
                        timer.cancel()
                        self._fill = None
            if not pending:  # stop() raced with an empty queue
                continue
            if len(self._in_flight) >= self.concurrency:
                # Every slot is busy: let the queue grow into the next batch meanwhile.
                self._slot_free = loop.create_future()
                try:
                    await self._slot_free
                finally:
                    self._slot_free = None
                continue
            # Share the queue among the free slots: one batch that swallowed every waiting
            # request would leave the other cores idle until it returned (measured: 64
            # connections, 2 slots, one 64-item batch at a time -> half the CPU idle).
            free_slots = self.concurrency - len(self._in_flight)
            count = min(-(-len(pending) // free_slots), self.max_batch_size)
            batch = [pending.popleft() for _ in range(count)]
            task = loop.create_task(self._run_batch(loop, batch))
            self._in_flight.add(task)
            task.add_done_callback(self._batch_done)
        if self._in_flight:  # stopping: let the running batches finish
            await asyncio.gather(*self._in_flight)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        _wake(self._slot_free)

    def _work(
        self, items: list[Any], buffer: np.ndarray
    ) -> tuple[np.ndarray | None, list[int], dict[int, Exception], float]:
        """In the executor thread: prepare the items, run the model once on the good ones.

        Returns (output rows for ``ok``, indices of the items that prepared, per-item preparation
        errors, seconds spent in the model call).
        """
        prepare = self._prepare_fn
        errors: dict[int, Exception] = {}
        if prepare is None:
            ok = list(range(len(items)))
            np.concatenate(items, axis=0, out=buffer[: len(items)])
        else:
            ok = []
            for i, item in enumerate(items):
                try:
                    buffer[len(ok)] = prepare(item).reshape(self.item_shape[1:])
                except Exception as exc:  # the item's own problem (a bad upload): it fails alone
                    errors[i] = exc
                    continue
                ok.append(i)
        if not ok:
            return None, ok, errors, 0.0
        started = time.perf_counter()
        outputs = self._predict_fn(buffer[: len(ok)])
        seconds = time.perf_counter() - started
        if len(outputs) != len(ok):
            raise RuntimeError(f"predict_fn returned {len(outputs)} rows for {len(ok)} inputs")
        return outputs, ok, errors, seconds

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        # Requests whose client went away were cancelled; don't spend model time on them.
        live = [(x, fut) for x, fut in batch if not fut.done()]
        if not live:
            return
        # A buffer is owned by one running batch at a time; with concurrency 1 it is always
        # the same one.
        buffer = (
            self._buffers.pop()
            if self._buffers
            else np.empty((self.max_batch_size, *self.item_shape[1:]), dtype=np.float32)
        )
        try:
            outputs, ok, errors, seconds = await loop.run_in_executor(
                self._executor, self._work, [x for x, _ in live], buffer
            )
        except Exception as exc:
            logger.exception("batched inference failed for %d items", len(live))
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self._buffers.append(buffer)
        for i, error in errors.items():
            fut = live[i][1]
            if not fut.done():
                fut.set_exception(error)
        if outputs is None:
            return
        n = len(ok)
        self.batches_run += 1
        self.items_run += n
        if self.on_batch is not None:
            self.on_batch(n, seconds)
        for row, i in enumerate(ok):
            fut = live[i][1]
            if not fut.done():
                fut.set_result(outputs[row])

"""An adaptive asyncio micro-batcher: many concurrent single-image requests, few model calls.

Requests append an item to a bounded queue and await a future. A worker task dispatches the
queue to the model, ``concurrency`` model calls at a time, each ONE predict call in a dedicated
executor thread (onnxruntime releases the GIL, so the event loop keeps serving):

* a free model slot takes what is queued AT ONCE: a lone request never waits for company
  (the old fixed 2 ms wait tripled its latency);
* while every slot is busy, new requests pile up and form the next batch when a slot frees;
  the queue is shared among the free slots, at most ``max_batch_size`` items per call;
* ``max_wait_ms`` > 0 (off by default) also holds a request for company while ANOTHER model
  call is running and a slot is free, at most that long after it arrived; never when the model
  is idle.

That is the policy of Triton's dynamic batcher and BentoML's adaptive batching without a
queue delay: batching happens exactly when the model is the bottleneck.

Failure handling, so that no request ever hangs:

* a full queue fails fast with OverloadedError instead of growing latency;
* ``timeout_s``: every item has a deadline; its future then fails with InferenceTimeoutError
  (queued too long, or the model call is slow or hung);
* an exception in the model (or in ``prepare_fn`` for one item, or in the ``on_batch`` hook)
  resolves the affected futures, never leaves them pending;
* the worker task is supervised: if it dies it is logged, ``on_worker_died`` is called,
  ``healthy`` turns False and the worker restarts after ``restart_delay_s`` (doubling while it
  keeps dying), picking up what is queued;
* an input buffer goes back to the pool only once its executor thread is done with it.

Items are [1, C, S, S] arrays (``item_shape``; Fashion-MNIST models: [1, 1, 28, 28]), or
anything ``prepare_fn`` turns into one: the service passes the uploaded bytes and its
preprocessing, so decoding runs in the batch's thread, off the event loop, and a request costs
one thread hop. An item that fails to prepare fails alone; the rest of its batch still runs.

``concurrency`` > 1 lets that many batches run at once, each in its own executor thread (an
onnxruntime session may be run from several threads): one process then keeps several cores busy
with single-threaded model calls, which on a small CPU beats both intra-op threads (their
synchronisation costs ~1.5x CPU per image) and extra worker processes (each one a full copy of
the interpreter, libraries and model).
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
from product_classifier.inference.errors import (
    BatcherClosedError,
    InferenceTimeoutError,
    OverloadedError,
)

logger = logging.getLogger(__name__)

ITEM_SHAPE = (1, 1, IMAGE_SIZE, IMAGE_SIZE)  # a Fashion-MNIST model's item, the default
PredictFn = Callable[[np.ndarray], np.ndarray]
PrepareFn = Callable[[Any], np.ndarray]
# (item, its future, loop time it was queued)
_Item = tuple[Any, "asyncio.Future[np.ndarray]", float]

# A worker that lived this long before dying starts the restart backoff from scratch.
_STABLE_WORKER_S = 60.0
_MAX_RESTART_DELAY_S = 10.0


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _fail(futures: Sequence[asyncio.Future[np.ndarray]], error: BaseException) -> int:
    """Resolve every still-pending future with ``error``; returns how many it resolved."""
    failed = 0
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)
            failed += 1
    return failed


class MicroBatcher:
    """Collects single items into batches for ``predict_fn`` (rows in, rows out, same order)."""

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        prepare_fn: PrepareFn | None = None,
        max_batch_size: int = 64,
        max_wait_ms: float = 0.0,
        queue_size: int = 1024,
        concurrency: int = 1,
        item_shape: tuple[int, ...] = ITEM_SHAPE,
        timeout_s: float | None = None,
        restart_delay_s: float = 0.1,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_ms < 0 or concurrency < 1:
            raise ValueError(
                "max_batch_size, queue_size and concurrency must be >= 1, max_wait_ms >= 0"
            )
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be > 0 (or None: no deadline)")
        if restart_delay_s < 0:
            raise ValueError("restart_delay_s must be >= 0")
        self._predict_fn = predict_fn
        self._prepare_fn = prepare_fn
        self.item_shape = tuple(item_shape)
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.restart_delay_s = restart_delay_s
        self._pending: collections.deque[_Item] = collections.deque()
        # One input buffer per running batch, reused (a free list; at most ``concurrency``).
        self._buffers: list[np.ndarray] = []
        # Running batches -> loop time they started (a hung model call shows up here).
        self._in_flight: dict[asyncio.Task[None], float] = {}
        self._slot_free: asyncio.Future[None] | None = None  # worker waiting for a model slot
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._worker_started = 0.0
        self._deaths_in_a_row = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Future[None] | None = None  # worker idle, queue empty
        self._fill: asyncio.Future[None] | None = None  # worker holding items for company
        self._accepting = False
        self._stopping = False
        # Counters for /v1/model and tests; plain ints, the loop is single-threaded.
        self.batches_run = 0
        self.items_run = 0
        self.timeouts = 0
        self.worker_restarts = 0
        # Hooks for metrics, all called on the event loop; an exception in one is logged.
        # (batch size, seconds of the model call) after each successful call:
        self.on_batch: Callable[[int, float], None] | None = None
        # (items that missed their deadline) whenever some do:
        self.on_timeout: Callable[[int], None] | None = None
        # (the error that killed the worker, None if it was cancelled) when it dies:
        self.on_worker_died: Callable[[BaseException | None], None] | None = None
        # () once a replacement worker runs:
        self.on_worker_restarted: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        return self._accepting

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def worker_alive(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def stalled(self) -> bool:
        """Every model slot has been busy with one call for longer than the deadline (a hung
        or pathologically slow model): nothing queued can be answered in time."""
        if self.timeout_s is None or len(self._in_flight) < self.concurrency or not self._loop:
            return False
        limit = self._loop.time() - self.timeout_s
        return all(started < limit for started in self._in_flight.values())

    @property
    def healthy(self) -> bool:
        """Accepting, with a live worker and a model slot that is not stuck (``/ready``)."""
        return self.health_problem() is None

    def health_problem(self) -> str | None:
        """Why ``healthy`` is False, in words for ``/ready``; None when healthy."""
        if not self._accepting:
            return "the model is not accepting requests (starting or stopping)"
        if not self.worker_alive:
            return "the micro-batcher's worker died and is restarting"
        if self.stalled:
            return f"every model call has been running for over {self.timeout_s:g} s"
        return None

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("batcher already started")
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="onnx-batch"
        )
        self._stopping = False
        self._accepting = True
        self._start_worker()

    def _start_worker(self) -> None:
        assert self._loop is not None
        self._restart = None
        self._worker_started = self._loop.time()
        self._worker = self._loop.create_task(self._run(), name="micro-batcher")
        self._worker.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        """Supervision: a worker that ends while the batcher runs has died; restart it."""
        if self._stopping or task is not self._worker:
            return
        # The dead worker may have been parked on any of these; the next one starts clean.
        self._wakeup = self._fill = self._slot_free = None
        error = None if task.cancelled() else task.exception()
        assert self._loop is not None
        now = self._loop.time()
        if now - self._worker_started > _STABLE_WORKER_S:
            self._deaths_in_a_row = 0
        delay = min(self.restart_delay_s * 2**self._deaths_in_a_row, _MAX_RESTART_DELAY_S)
        self._deaths_in_a_row += 1
        self.worker_restarts += 1
        logger.error(
            "micro-batcher worker died (%s); restarting in %.2f s with %d item(s) queued",
            "cancelled" if error is None else repr(error),
            delay,
            len(self._pending),
            exc_info=error,
        )
        self._call_hook(self.on_worker_died, error)
        self._restart = self._loop.call_later(delay, self._restart_worker)

    def _restart_worker(self) -> None:
        if self._stopping:
            return
        self._start_worker()
        logger.warning("micro-batcher worker restarted")
        self._call_hook(self.on_worker_restarted)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Refuse new items, finish every queued one, then stop the worker and its threads.

        ``timeout_s``: stop waiting for model calls after that long (a hung model must not
        block shutdown forever); what is unanswered then fails with BatcherClosedError.
        """
        self._accepting = False
        self._stopping = True
        if self._restart is not None:  # the worker is dead: start one to drain the queue
            self._restart.cancel()
            self._start_worker()
        _wake(self._wakeup)
        _wake(self._fill)
        worker = self._worker
        if worker is not None:
            done, _ = await asyncio.wait((worker,), timeout=timeout_s)
            if not done:
                worker.cancel()
                await asyncio.wait((worker,))
            self._worker = None
        closed = BatcherClosedError("the model stopped before answering")
        # Anything still queued or running now (a timeout, or a worker that died while
        # stopping) must not be left pending.
        _fail([fut for _, fut, _ in self._pending], closed)
        self._pending.clear()
        abandoned = list(self._in_flight)
        for task in abandoned:
            task.cancel()  # _run_batch fails its futures; a running thread is left to finish
        if abandoned:
            await asyncio.wait(abandoned)
        if self._executor is not None:
            # Waiting here would hang on a hung model call; the threads end when it returns.
            self._executor.shutdown(wait=timeout_s is None, cancel_futures=True)
            self._executor = None

    def submit(self, item: Any) -> asyncio.Future[np.ndarray]:
        """Queue one item ([1, 1, 28, 28] float32, or ``prepare_fn``'s input); the future
        resolves to its output row, or raises what ``prepare_fn`` raised for it."""
        return self.submit_many((item,))[0]

    def submit_many(self, items: Sequence[Any]) -> list[asyncio.Future[np.ndarray]]:
        """Queue several items, all or none (a batch request is admitted whole or refused)."""
        loop = self._loop
        if not self._accepting or loop is None:
            raise BatcherClosedError("the model is not accepting requests (starting or stopping)")
        if self._worker is None or self._restart is not None:
            raise BatcherClosedError("the model is restarting its batcher; retry shortly")
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
        create_future = loop.create_future
        futures = [create_future() for _ in items]
        now = loop.time()
        self._pending.extend((item, fut, now) for item, fut in zip(items, futures, strict=True))
        if self.timeout_s is not None:
            # One timer per submission; cancelled as soon as its (last) item is answered, so
            # the loop's timer heap stays small.
            timer = loop.call_at(now + self.timeout_s, self._expire, futures)
            futures[-1].add_done_callback(lambda _fut: timer.cancel())
        if self._wakeup is not None:
            _wake(self._wakeup)
        elif self._fill is not None and len(self._pending) >= self.max_batch_size:
            _wake(self._fill)
        return futures

    async def predict(self, item: Any) -> np.ndarray:
        return await self.submit(item)

    def _expire(self, futures: list[asyncio.Future[np.ndarray]]) -> None:
        # A queued item stays in the queue (done futures are skipped when batches form); a
        # running one's row is dropped when its call returns.
        expired = _fail(
            futures, InferenceTimeoutError(f"no answer from the model within {self.timeout_s} s")
        )
        if expired:
            self.timeouts += expired
            self._call_hook(self.on_timeout, expired)

    def _call_hook(self, hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # a metrics hook must never break serving
            logger.exception("micro-batcher hook %r failed", hook)

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
                continue
            free_slots = self.concurrency - len(self._in_flight)
            if free_slots <= 0:
                # Every slot is busy: let the queue grow into the next batch meanwhile.
                self._slot_free = loop.create_future()
                try:
                    await self._slot_free
                finally:
                    self._slot_free = None
                continue
            if self._in_flight and self.max_wait_s > 0 and not self._stopping:
                # Opt-in: another call is running, so more requests are likely on their way;
                # hold the oldest at most max_wait_s after its arrival (an idle model never
                # holds anything).
                hold = pending[0][2] + self.max_wait_s - loop.time()
                if hold > 0 and len(pending) < self.max_batch_size:
                    self._fill = loop.create_future()
                    timer = loop.call_later(hold, _wake, self._fill)
                    try:
                        await self._fill
                    finally:
                        timer.cancel()
                        self._fill = None
                    continue
            self._dispatch(loop, free_slots)
        if self._in_flight:  # stopping: let the running batches finish
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _dispatch(self, loop: asyncio.AbstractEventLoop, free_slots: int) -> None:
        """Start one model call with a share of the queue."""
        pending = self._pending
        # Share the queue among the free slots: one batch that swallowed every waiting
        # request would leave the other cores idle until it returned (measured: 64
        # connections, 2 slots, one 64-item batch at a time -> half the CPU idle).
        count = min(-(-len(pending) // free_slots), self.max_batch_size)
        batch = [pending.popleft() for _ in range(count)]
        task = loop.create_task(self._run_batch(loop, batch))
        self._in_flight[task] = loop.time()
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        _wake(self._slot_free)
        _wake(self._fill)  # the model may be idle now: hold nothing any longer

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
        # Requests that timed out or whose client went away are done; don't spend model time
        # on them.
        live = [(x, fut) for x, fut, _ in batch if not fut.done()]
        if not live:
            return
        futures = [fut for _, fut in live]
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
        except asyncio.CancelledError:
            # The executor thread may still be writing into the buffer: it is NOT returned to
            # the pool (garbage once the thread lets go of it).
            _fail(futures, BatcherClosedError("the model call was abandoned (shutting down)"))
            raise
        except Exception as exc:
            self._buffers.append(buffer)  # the thread has finished with it
            logger.exception("batched inference failed for %d items", len(live))
            _fail(futures, exc)
            return
        self._buffers.append(buffer)
        try:
            for i, error in errors.items():
                fut = futures[i]
                if not fut.done():
                    fut.set_exception(error)
            if outputs is None:
                return
            for row, i in enumerate(ok):
                fut = futures[i]
                if not fut.done():
                    fut.set_result(outputs[row])
            n = len(ok)
            self.batches_run += 1
            self.items_run += n
        except Exception as exc:  # e.g. outputs that cannot be indexed per row
            logger.exception("could not hand out the results of a batch of %d", len(live))
            _fail(futures, exc)
            return
        if self.on_batch is not None:
            self._call_hook(self.on_batch, n, seconds)

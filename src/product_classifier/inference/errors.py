"""Errors raised by the inference layer; the service maps each one to an HTTP status."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The model cannot be served: missing, corrupt, tampered with, or breaking the contract."""


class OverloadedError(RuntimeError):
    """The micro-batcher's queue is full; the caller should retry later (HTTP 503)."""


class BatcherClosedError(RuntimeError):
    """The micro-batcher is not running (not started yet, or shutting down)."""


class InferenceTimeoutError(TimeoutError):
    """An item was not answered within the batcher's deadline (queued too long, or the model
    call is slow or hung); the service answers 504."""

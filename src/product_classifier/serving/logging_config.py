"""Logging for the service, configured here and nowhere else.

Every line is one JSON object (``log_format="json"``, the default) or ``key=value`` text:
``ts``, ``level``, ``logger``, ``msg``, the ``request_id`` of the request being served (when
there is one) and whatever structured fields the caller passed as ``extra={"fields": {...}}``.
The per-request line (logger ``product_classifier.access``) is built by
:mod:`product_classifier.serving.observability`; formatting it costs one ``orjson.dumps``.

Two entry points, one configuration:

* ``build_log_config(level, fmt)`` -> a ``logging.config.dictConfig`` dict. ``product-classifier
  serve`` hands it to uvicorn, which applies it in every worker process;
* ``ensure_logging(level, fmt)`` applies the same dict when nothing configured logging at all
  (e.g. ``uvicorn product_classifier.serving.app:create_app --factory``), so the request lines
  are never silently dropped.
"""

from __future__ import annotations

import logging
import logging.config
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson

ACCESS_LOGGER = "product_classifier.access"
PACKAGE_LOGGER = "product_classifier"
# uvicorn's extra level below DEBUG ("trace").
TRACE_LEVEL = 5

# The request being served on this task: any object with a ``request_id`` attribute. Set by the
# observability middleware, read by the formatters so that every line logged while serving a
# request (a preprocessing warning, an unhandled error) carries its id.
CURRENT_REQUEST: ContextVar[Any] = ContextVar("product_classifier_request", default=None)


def level_number(level: str) -> int:
    """``"info"`` -> ``logging.INFO``; ``"trace"`` -> uvicorn's level 5."""
    name = level.strip().upper()
    if name == "TRACE":
        return TRACE_LEVEL
    number = logging.getLevelName(name)
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


class _Timestamp:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        # round, not int: 0.001 s is stored as 0.000999...; 999.6 ms stays in this second.
        millis = min(round((created - second) * 1000), 999)
        return f"{self._prefix}.{millis:03d}Z"


def _base_fields(record: logging.LogRecord, timestamp: _Timestamp) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    request = CURRENT_REQUEST.get()
    if request is not None:
        request_id = request.request_id
        if request_id is not None:
            out["request_id"] = request_id
    fields = getattr(record, "fields", None)
    if fields:
        out.update(fields)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line; non-JSON values (paths, enums) are written with ``str``."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _Timestamp()

    def format(self, record: logging.LogRecord) -> str:
        out = _base_fields(record, self._timestamp)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # orjson: ~1 us per request line instead of ~8 with json.dumps (the access log writes
        # one per request). Non-JSON values (paths, enums) are written with str().
        return orjson.dumps(out, default=str).decode("utf-8")


class TextFormatter(logging.Formatter):
    """For a developer's terminal: ``ts level logger msg key=value ...``."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _Timestamp()

    def format(self, record: logging.LogRecord) -> str:
        out = _base_fields(record, self._timestamp)
        level = out.pop("level").upper()
        head = f"{out.pop('ts')} {level:<7} {out.pop('logger')}: {out.pop('msg')}"
        tail = " ".join(f"{key}={value}" for key, value in out.items())
        text = f"{head} {tail}" if tail else head
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def build_log_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """The whole logging setup as a dictConfig: one stderr handler on the root logger.

    Our package and uvicorn log at ``level``; third-party libraries only from WARNING up, so
    that ``debug`` does not drown the service's own lines in multipart-parser chatter.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}; use json or text")
    number = level_number(level)
    package_level = max(number, logging.DEBUG)  # "trace" is uvicorn's; we stop at DEBUG
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": max(number, logging.WARNING)},
        "loggers": {
            PACKAGE_LOGGER: {"level": package_level, "handlers": [], "propagate": True},
            # uvicorn's own config gives these handlers; ours routes them through the root.
            "uvicorn": {"level": number, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": number, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": number, "handlers": [], "propagate": True},
        },
    }


@contextmanager
def lean_log_records() -> Iterator[None]:
    """While serving, don't collect what our formatters never print: the caller's file and
    line (a stack walk per record), thread, process and multiprocessing names.

    These are the switches of the logging HOWTO's "Optimization" section. The access log
    writes one record per request, and the stack walk alone cost ~3% of a 28x28 request's CPU.
    Process-wide, so the previous values come back when serving stops.
    """
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses)
    saved_mp = logging.logMultiprocessing
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    try:
        yield
    finally:
        logging._srcfile, logging.logThreads, logging.logProcesses = saved
        logging.logMultiprocessing = saved_mp


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    logging.config.dictConfig(build_log_config(level, fmt))


def ensure_logging(level: str = "info", fmt: str = "json") -> bool:
    """Configure logging unless someone already did (the CLI, a test harness, an embedding app).

    Returns whether it configured anything.
    """
    if logging.getLogger().handlers or logging.getLogger(PACKAGE_LOGGER).handlers:
        return False
    configure_logging(level, fmt)
    return True

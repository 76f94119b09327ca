"""serving/logging_config.py: one JSON object per line, request ids, one configuration."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from product_classifier.serving.logging_config import (
    ACCESS_LOGGER,
    CURRENT_REQUEST,
    TRACE_LEVEL,
    JsonFormatter,
    TextFormatter,
    build_log_config,
    level_number,
)


class _Request:
    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id


def _record(
    msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("product_classifier.x", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.fixture
def request_context() -> Iterator[None]:
    token = CURRENT_REQUEST.set(_Request("req-123"))
    yield
    CURRENT_REQUEST.reset(token)


def test_json_line_has_the_standard_fields_and_the_structured_ones() -> None:
    line = JsonFormatter().format(_record(fields={"route": "/v1/predict", "status": 200}))
    assert "\n" not in line
    out = json.loads(line)
    assert out["msg"] == "hello world"
    assert out["level"] == "info"
    assert out["logger"] == "product_classifier.x"
    assert out["route"] == "/v1/predict" and out["status"] == 200
    assert out["ts"].endswith("Z") and out["ts"][10] == "T" and len(out["ts"]) == 24
    assert "request_id" not in out  # no request being served


def test_request_id_of_the_current_request_is_added(request_context: None) -> None:
    out = json.loads(JsonFormatter().format(_record()))
    assert out["request_id"] == "req-123"
    # An explicit field wins (the access line passes its own).
    out = json.loads(JsonFormatter().format(_record(fields={"request_id": "mine"})))
    assert out["request_id"] == "mine"


def test_exceptions_and_odd_values_stay_one_json_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        exc_info = sys.exc_info()
    record = _record(fields={"path": io.StringIO, "text": 'quote " and \n newline'})
    record.exc_info = exc_info
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert "ValueError: boom" in out["exc"]
    assert out["text"] == 'quote " and \n newline'
    assert "StringIO" in out["path"]  # str() of a non-JSON value, not a crash


def test_timestamp_milliseconds_change_within_a_second() -> None:
    formatter = JsonFormatter()
    first, second = _record(), _record()
    first.created, second.created = 1_700_000_000.001, 1_700_000_000.999
    assert json.loads(formatter.format(first))["ts"] == "2023-11-14T22:13:20.001Z"
    assert json.loads(formatter.format(second))["ts"] == "2023-11-14T22:13:20.999Z"


def test_text_format_is_readable(request_context: None) -> None:
    line = TextFormatter().format(_record(fields={"status": 200}))
    assert " INFO " in line and "product_classifier.x: hello world" in line
    assert "request_id=req-123" in line and "status=200" in line


@pytest.mark.parametrize(
    ("level", "number"),
    [
        ("info", logging.INFO),
        ("DEBUG", logging.DEBUG),
        ("warning", logging.WARNING),
        ("trace", TRACE_LEVEL),
    ],
)
def test_level_numbers(level: str, number: int) -> None:
    assert level_number(level) == number


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        level_number("loud")
    with pytest.raises(ValueError, match="unknown log format"):
        build_log_config("info", "xml")


def test_config_levels_follow_the_setting() -> None:
    config = build_log_config("debug", "json")
    assert config["loggers"]["product_classifier"]["level"] == logging.DEBUG
    assert config["loggers"]["uvicorn.error"]["level"] == logging.DEBUG
    # Third-party libraries stay at WARNING even in debug.
    assert config["root"]["level"] == logging.WARNING
    trace = build_log_config("trace")
    assert trace["loggers"]["uvicorn"]["level"] == TRACE_LEVEL
    assert trace["loggers"]["product_classifier"]["level"] == logging.DEBUG
    assert build_log_config("error")["root"]["level"] == logging.ERROR


_CONFIGURE_AND_LOG = """
import logging, sys
from product_classifier.serving.logging_config import configure_logging, ensure_logging
configure_logging(sys.argv[1], sys.argv[2])
assert ensure_logging() is False  # already configured: leave it alone
logging.getLogger("product_classifier.access").info("request", extra={"fields": {"status": 200}})
logging.getLogger("product_classifier.access").debug("probe", extra={"fields": {"status": 200}})
logging.getLogger("uvicorn.error").info("Started server process")
logging.getLogger("some.library").info("chatter")
logging.getLogger("some.library").warning("a library warning")
"""


def _run(level: str, fmt: str = "json") -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _CONFIGURE_AND_LOG, level, fmt],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout == ""  # logs go to stderr; stdout stays clean for tools
    return proc.stderr.splitlines()


def test_configured_process_logs_json_lines_at_the_chosen_level() -> None:
    lines = [json.loads(line) for line in _run("info")]
    messages = [(line["logger"], line["msg"]) for line in lines]
    assert messages == [
        (ACCESS_LOGGER, "request"),
        ("uvicorn.error", "Started server process"),
        ("some.library", "a library warning"),
    ]
    assert lines[0]["status"] == 200
    debug = [json.loads(line)["msg"] for line in _run("debug")]
    assert "probe" in debug and "chatter" not in debug
    assert [json.loads(line)["msg"] for line in _run("warning")] == ["a library warning"]


def test_text_format_in_a_process() -> None:
    lines = _run("info", "text")
    assert len(lines) == 3
    assert "product_classifier.access: request status=200" in lines[0]

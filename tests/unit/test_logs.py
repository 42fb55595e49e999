"""JSON logs: one parseable object per line, with the object a record is about."""

from __future__ import annotations

import json
import logging
import sys

from doks_access import logs


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "doks_access.reconcile", logging.WARNING, __file__, 1, message, (), None
    )
    record.__dict__.update(extra)
    return record


def test_a_record_becomes_one_json_object_with_its_object_reference() -> None:
    line = logs.JsonFormatter().format(_record("renewal failed", object="platform/prod"))

    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "doks_access.reconcile"
    assert entry["message"] == "renewal failed"
    assert entry["object"] == "platform/prod"
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def _fail() -> None:
    raise ValueError("boom")


def test_exceptions_are_kept_inside_the_one_line() -> None:
    record = _record("failed")
    try:
        _fail()
    except ValueError:
        record.exc_info = sys.exc_info()

    entry = json.loads(logs.JsonFormatter().format(record))

    assert "ValueError: boom" in entry["exception"]

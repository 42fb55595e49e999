"""JSON logs: one parseable object per line, with the object a record is about."""

from __future__ import annotations

import json
import logging
import sys

import pytest

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


def test_records_logged_while_an_object_is_reconciled_name_it() -> None:
    handler = logs.handler(json_format=True)
    token = logs.current_object.set("platform/prod")
    try:
        record = _record("renewed")
        handler.filter(record)
    finally:
        logs.current_object.reset(token)
    outside = _record("idle")
    handler.filter(outside)

    assert json.loads(handler.format(record))["object"] == "platform/prod"
    assert "object" not in json.loads(handler.format(outside))


def test_the_text_form_prefixes_the_object() -> None:
    handler = logs.handler(json_format=False)
    token = logs.current_object.set("platform/prod")
    try:
        record = _record("renewed")
        handler.filter(record)
    finally:
        logs.current_object.reset(token)

    assert handler.format(record).endswith("doks_access.reconcile: [platform/prod] renewed")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("INFO", ["kopf.objects WARNING", "httpx WARNING", "doks_access.reconcile INFO"]),
        (
            "DEBUG",
            [
                "kopf.objects INFO",
                "kopf.objects WARNING",
                "httpx INFO",
                "httpx WARNING",
                "doks_access.reconcile INFO",
            ],
        ),
    ],
)
def test_per_event_and_per_request_lines_only_at_debug(
    level: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(level=level, json_format=True)
        for name in ("kopf.objects", "httpx"):
            logging.getLogger(name).info("Handler 'wake-on-change' succeeded.")
            logging.getLogger(name).warning("Handler 'wake-on-change' failed.")
        logging.getLogger("doks_access.reconcile").info("fetching a credential (New)")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name in logs.CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [f"{entry['logger']} {entry['level']}" for entry in lines] == expected

"""Log output: plain text for people, or one JSON object per line for log pipelines.

Records logged while one object is reconciled carry it (``<namespace>/<name>``, from the
:data:`current_object` context variable that the reconciler sets), in the text form as a prefix
and in the JSON form as a field of its own, so that logs can be filtered by object. Nothing
secret is ever logged (DESIGN 4.8): the modules that handle tokens and kubeconfigs log only names
and outcomes.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: [%(object)s] %(message)s"
current_object: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_object", default=None
)


class _ObjectFilter(logging.Filter):
    """Adds ``record.object``: the object being reconciled, or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "object", None) is None:
            record.object = current_object.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "object"?, "exception"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        subject = getattr(record, "object", None)
        if subject not in (None, "-"):
            entry["object"] = str(subject)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def handler(*, json_format: bool) -> logging.Handler:
    """A stderr handler in the chosen form that names the object being reconciled."""
    made = logging.StreamHandler()
    made.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    made.addFilter(_ObjectFilter())
    return made


# Loggers that write one line per watch event (Kopf: "Handler 'wake-on-change' succeeded.") or per
# HTTP request (httpx) at INFO. At scale that is most of the log and a good part of the CPU, and it
# says nothing the operator's own INFO lines do not; below DEBUG only their warnings are kept.
CHATTY_LOGGERS = ("kopf.objects", "httpx")


def configure(*, level: str, json_format: bool) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler(json_format=json_format)]
    root.setLevel(level)
    quiet = logging.getLevelName(level) > logging.DEBUG
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)

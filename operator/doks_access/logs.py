"""Log output: plain text for people, or one JSON object per line for log pipelines.

Records that concern one object carry it as ``extra={"object": "<namespace>/<name>"}``; the JSON
form puts it in its own field so that logs can be filtered by object. Nothing secret is ever
logged (DESIGN 4.8): the modules that handle tokens and kubeconfigs log only names and outcomes.
"""

from __future__ import annotations

import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
        if subject is not None:
            entry["object"] = str(subject)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(*, level: str, json_format: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

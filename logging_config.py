"""Logging to stdout (text or JSON lines); each line carries the request id (request_context)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime
from typing import Any

from settings import ConfigurationError, Settings, get_settings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}
# uvicorn adds color_message (the message with ANSI colours) to its records.
_NOT_FIELDS = _STANDARD_ATTRS | {"color_message"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class IsoTimeFormatter(logging.Formatter):
    """`asctime` in ISO 8601 with milliseconds and the UTC offset: 2026-12-01T02:31:54.123+00:00."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")


class JsonFormatter(IsoTimeFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in record.__dict__.items() if key not in _NOT_FIELDS
        )
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# uvicorn's loggers: their lines go through the root handler, so they share its format.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")


def log_handler(log_format: str) -> logging.Handler:
    """The one stdout handler: JSON lines or text, both with ISO 8601 times."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else IsoTimeFormatter(TEXT_FORMAT))
    return handler


def uvicorn_log_handler() -> logging.Handler:
    """Factory named by uvicorn-logging.json (`uvicorn --log-config`): uvicorn's first lines,
    logged before the app's lifespan configures logging, already have the app's format."""
    try:
        log_format = get_settings().log_format
    except ConfigurationError:
        log_format = "text"  # main.py then exits on the one-line error itself
    return log_handler(log_format)


def configure_logging(settings: Settings) -> None:
    """Configure the root logger once, at start-up."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(settings.log_format)]
    root.setLevel(settings.log_level)
    for name in _UVICORN_LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # uvicorn's own access log would duplicate ours (and lacks the request id).
    logging.getLogger("uvicorn.access").disabled = True

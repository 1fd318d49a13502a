"""Log output for the command line: readable lines, or JSON lines for machines."""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from typing import Literal

__all__ = ["configure_logging"]

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is data.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, monotonic time, level, logger, message, extras."""

    def __init__(self, node_id: str | None) -> None:
        super().__init__()
        self._node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            # Monotonic time lets tools order events across restarts without wall-clock jumps.
            "monotonic": round(time.monotonic(), 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._node_id is not None:
            entry["node"] = self._node_id
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: int, log_format: LogFormat = "text", node_id: str | None = None
) -> None:
    """Send the library's log to stderr in the chosen format (the CLI only; never the library)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLinesFormatter(node_id))
    else:
        prefix = f"{node_id} " if node_id else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

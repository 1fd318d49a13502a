"""Warnings about hostile or broken input, at most one per kind per interval.

A peer that floods a node with garbage must not flood its log too: the first refusal of
each kind in an interval is a WARNING, the rest are DEBUG, and the next WARNING says how
many were held back. The counters in the metrics still count every one.
"""

from __future__ import annotations

import logging
import time

__all__ = ["LimitedWarnings"]


class LimitedWarnings:
    """Logs a warning per key at most once per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        # key -> (time of the last warning, how many were held back since)
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        """Log ``message % args`` as a warning, unless ``key`` warned recently."""
        now = time.monotonic()
        last, held = self._last.get(key, (-self._interval, 0))
        if now - last < self._interval:
            self._last[key] = (last, held + 1)
            self._logger.debug(message, *args)
            return
        self._last[key] = (now, 0)
        if held:
            message += " (%d similar warnings held back in the last %.0fs)"
            args = (*args, held, self._interval)
        self._logger.warning(message, *args)

"""A flood of refusals gives one warning per kind per interval, and says what it held back."""

from __future__ import annotations

import logging

import pytest

from almost_raft.transport.tcp._log_limit import LimitedWarnings


def test_repeated_warnings_are_held_back_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("almost_raft.test_limit")
    limited = LimitedWarnings(logger, interval=3600)
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        for i in range(5):
            limited.warn("garbage", "bad frame %d", i)
        limited.warn("tls", "bad tls")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["bad frame 0", "bad tls"]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 4


def test_the_next_warning_after_the_interval_reports_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("almost_raft.test_limit")
    limited = LimitedWarnings(logger, interval=0.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        limited.warn("k", "one")
        limited._last["k"] = (limited._last["k"][0], 7)
        limited.warn("k", "two")
    assert caplog.records[-1].getMessage() == "two (7 similar warnings held back in the last 0s)"

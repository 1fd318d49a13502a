"""The clock an election runs on: CLOCK_BOOTTIME where there is one.

Leases are measured on this clock, so it must keep counting whenever the machine's
processes could be stopped, as ``CLOCK_BOOTTIME`` does on Linux: it is monotonic and,
unlike ``CLOCK_MONOTONIC``, goes on while the machine is suspended. A follower's promise
then runs out on time even if its machine slept through it. Elsewhere
``time.monotonic()`` stands in; on macOS and Windows it too counts time asleep.

The event loop's timers run on ``time.monotonic()``, so after a suspension a timer may
fire late by the time slept; every decision is taken on this clock when the timer fires,
so a late timer costs time, never a wrong answer.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

__all__ = ["CLOCK_NAME", "election_clock", "read_election_clock"]

_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)

#: Which clock :func:`election_clock` reads: ``"CLOCK_BOOTTIME"`` or ``"monotonic"``.
CLOCK_NAME = "CLOCK_BOOTTIME" if _BOOTTIME is not None else "monotonic"


def election_clock() -> float:
    """Seconds on the election's clock: CLOCK_BOOTTIME on Linux, else ``time.monotonic()``.

    Only differences between readings mean anything; a :class:`Lease` and a
    :class:`Leadership`'s ``lease_until`` are on this scale.
    """
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


#: :func:`election_clock` with no Python frame of its own (the same reading): the
#: runtime reads the clock on every message.
read_election_clock: Callable[[], float] = (
    functools.partial(time.clock_gettime, _BOOTTIME) if _BOOTTIME is not None else time.monotonic
)

"""Each simulated node's own clock, which runs at its own rate within the drift bound.

The simulator's event times are real time. A node's core sees only its own clock: a
fixed offset plus a rate times real time. Rates lie in ``[1 - d/2, 1 + d/2]`` for a drift
bound ``d``, so while one clock advances by ``x`` every other advances by at least
``x * (1 - d)``, the guarantee :attr:`ElectionConfig.max_clock_drift` states.
"""

from __future__ import annotations

import math
import random

__all__ = ["NodeClock"]


class NodeClock:
    """A linear clock: ``local = offset + rate * real``."""

    __slots__ = ("offset", "rate")

    def __init__(self, offset: float, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"a clock rate must be positive, got {rate}")
        self.offset = offset
        self.rate = rate

    @classmethod
    def drawn(cls, rng: random.Random, max_clock_drift: float) -> NodeClock:
        """A clock whose rate is anywhere the drift bound allows, often at its edges."""
        half = max_clock_drift / 2
        # Half the clocks sit at an edge of the range: that is where a wrong lease shows.
        rate = 1 + half * (rng.choice((-1.0, 1.0)) if rng.random() < 0.5 else rng.uniform(-1, 1))
        return cls(rng.uniform(0.0, 100.0), rate)

    def local(self, real: float) -> float:
        """The node's reading at real time ``real``."""
        return self.offset + self.rate * real

    def real(self, local: float) -> float:
        """A real time, within an ulp or two of the earliest, at which the node's
        reading is at least ``local``.

        Rounded up, so that a deadline set for that real time has passed on the node's
        own clock when it fires: otherwise the node would be woken again and again at the
        same instant, a moment before its deadline.
        """
        if local == math.inf or local == -math.inf:
            return local
        offset, rate = self.offset, self.rate
        real = (local - offset) / rate
        # The division is off by an ulp or two at most; this loop takes a step or two.
        while offset + rate * real < local:
            real = math.nextafter(real, math.inf)
        return real

"""The exclusivity checker: no two nodes hold a lease at the same real time.

A node is exclusive while its latest :class:`~almost_raft.core._lease.Lease` says so on
its own clock, from the moment it learned of that lease (its batch was published, as a
runtime would start work then). The checker turns each node's stretches of exclusivity
into real time through the node's :class:`NodeClock` and flags any two nodes whose
stretches overlap. A stretch ends at the lease's end, at a lease that shrank (a
hand-over ends it at once) or at the node's crash, whichever comes first; only what
really happened is compared, never what a lease still promised.
"""

from __future__ import annotations

import dataclasses

from ..core._lease import Lease
from ._checker import Checker
from ._clock import NodeClock

__all__ = ["TWO_EXCLUSIVE", "ExclusiveChecker"]

TWO_EXCLUSIVE = "two_exclusive_at_once"


@dataclasses.dataclass(slots=True)
class _Stretch:
    """A node's exclusive time in real seconds: ``[start, end)``; ``end`` may be future."""

    term: int
    lease_start: float
    start: float
    end: float


class ExclusiveChecker:
    """Collects each node's exclusive stretches and reports overlaps to a :class:`Checker`."""

    __slots__ = ("_checker", "_current", "_done")

    def __init__(self, checker: Checker) -> None:
        self._checker = checker
        self._current: dict[str, _Stretch] = {}
        # Finished stretches, as (node, term, start, end).
        self._done: list[tuple[str, int, float, float]] = []

    def lease(self, node: str, lease: Lease, clock: NodeClock, now: float) -> None:
        """``node`` published ``lease`` at real time ``now``."""
        start = clock.real(lease.start)
        end = clock.real(lease.until)
        current = self._current.get(node)
        if current is not None:
            same = current.term == lease.term and current.lease_start == start
            if same and current.end > now:
                # Renewed before it ran out (or ended early): the same stretch.
                current.end = max(current.start, end)
                return
            self._finish(node, current, now)
        # Work starts when the node learns that it may, not earlier.
        self._current[node] = _Stretch(lease.term, start, max(start, now), end)

    def stopped(self, node: str, now: float) -> None:
        """``node``'s process died at ``now``: its work died with it."""
        current = self._current.pop(node, None)
        if current is not None:
            self._finish(node, current, now)

    def finish(self, now: float) -> None:
        """The run ended at ``now``: judge what is still going on."""
        for node in sorted(self._current):
            self._finish(node, self._current[node], now)
        self._current.clear()

    def _finish(self, node: str, stretch: _Stretch, now: float) -> None:
        # Each pair is judged once: when the later of the two finishes.
        start, end = stretch.start, min(stretch.end, now)
        if end <= start:
            return
        for other, term, other_start, other_end in self._done:
            if other != node and max(start, other_start) < min(end, other_end):
                self._report(node, stretch.term, other, term, max(start, other_start), now)
        self._done.append((node, stretch.term, start, end))

    def _report(
        self, node: str, term: int, other: str, other_term: int, at: float, now: float
    ) -> None:
        self._checker.report(
            TWO_EXCLUSIVE,
            f"{node} (lease of term {term}) and {other} (lease of term {other_term}) were "
            f"both exclusive at {at:.6f}s",
            now,
        )

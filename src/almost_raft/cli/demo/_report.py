"""What both demos print: a timeline of events and a table of failover times."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TextIO

__all__ = ["Failover", "Timeline", "print_summary"]


@dataclasses.dataclass(frozen=True, slots=True)
class Failover:
    """One leader kill and what followed, in seconds since the kill."""

    old_leader: str
    old_term: int
    new_leader: str
    new_term: int
    elected_after: float
    agreed_after: float


class Timeline:
    """Prints lines stamped with the seconds since the timeline began (monotonic clock)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def clock(self) -> float:
        """Seconds since the timeline began."""
        return time.monotonic() - self.started

    def say(self, line: str, at: float | None = None) -> None:
        """Print ``line`` stamped with now, or with ``at`` (a ``time.monotonic()`` value)."""
        elapsed = self.clock() if at is None else at - self.started
        print(f"[{elapsed:7.3f}s] {line}", file=self.out, flush=True)


def print_summary(failovers: list[Failover], out: TextIO) -> None:
    """Print one row per failover, then min / median / max until all live nodes agree."""
    if not failovers:
        return
    print("\nfailover  old leader  new leader  elected (ms)  all agree (ms)", file=out)
    for number, f in enumerate(failovers, 1):
        print(
            f"{number:>8}  {f.old_leader:>6} t{f.old_term:<3} {f.new_leader:>6} t{f.new_term:<3} "
            f"{f.elected_after * 1000:>12.1f}  {f.agreed_after * 1000:>14.1f}",
            file=out,
        )
    agreed = [f.agreed_after * 1000 for f in failovers]
    print(
        f"\nfailover until all live nodes agree: min {min(agreed):.0f} ms, "
        f"median {statistics.median(agreed):.0f} ms, max {max(agreed):.0f} ms "
        f"over {len(agreed)} kills",
        file=out,
    )

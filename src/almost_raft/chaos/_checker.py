"""Checks a chaos run afterwards, from the nodes' JSON logs and the sampled state files.

Inputs
------
*Leadership events*: the ``"event": "leader_changed"`` lines each node writes with
``--log-format json`` (``leader``, ``term``, ``monotonic``; ``is_self`` when the node
claims leadership itself). One log file per node, across its restarts.

*State samples*: the term read from a node's state file by the harness, after each kill,
after each restart and at the end, with the harness's ``time.monotonic()``. On one machine
that is the clock the nodes log with, so samples and events share one timeline.

*Outages*: when the harness killed or stopped a node; a leader that is down leads no one.

Invariants
----------
``two_leaders_in_term``: two nodes claimed leadership of the same term.
``term_decreased``: a node's term, from its events and its state file in time order,
went down, whether in a running process or across a crash and restart.

Measured, not judged: every *leaderless window*, a stretch with no node that claimed
leadership, still believes it and is up. A node stops leading when it logs another leader
view, or when it is killed or stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..sim._invariants import TERM_DECREASED, TWO_LEADERS_IN_TERM, SafetyLedger

__all__ = [
    "TERM_DECREASED",
    "TWO_LEADERS_IN_TERM",
    "CheckResult",
    "LeaderEvent",
    "Outage",
    "StateSample",
    "Violation",
    "check",
    "read_events",
]


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderEvent:
    """One ``leader_changed`` line: ``node`` learned that ``leader`` leads ``term``."""

    node: str
    leader: str | None
    term: int
    monotonic: float

    @property
    def is_self(self) -> bool:
        """Whether the node claimed leadership itself."""
        return self.leader == self.node


@dataclasses.dataclass(frozen=True, slots=True)
class StateSample:
    """The term in ``node``'s state file, read at ``monotonic``."""

    node: str
    term: int
    monotonic: float


@dataclasses.dataclass(frozen=True, slots=True)
class Outage:
    """``node`` was down (killed or stopped) from ``start``; ``end`` is ``None`` if still."""

    node: str
    start: float
    end: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """A broken invariant: its kind and what happened, naming nodes and terms."""

    kind: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """What the checker found.

    Attributes:
        violations: every broken invariant; a correct run has none.
        elections: leadership claims, one per term that had a leader.
        leaders: the distinct nodes that led at least once.
        leaderless: each window with no leader within the checked span, ``(start, end)``.
    """

    violations: tuple[Violation, ...]
    elections: int
    leaders: tuple[str, ...]
    leaderless: tuple[tuple[float, float], ...]

    @property
    def longest_leaderless(self) -> float:
        """The longest leaderless window in seconds (0 if there was none)."""
        return max((end - start for start, end in self.leaderless), default=0.0)


def read_events(path: Path, node: str | None = None) -> list[LeaderEvent]:
    """The leadership events of one node's JSON log file.

    Lines that are not JSON objects (a leader command's output, say) are skipped. The
    node is the line's ``"node"`` field, else ``node``, else the file name's stem.
    """
    events = []
    default = node if node is not None else path.stem
    with path.open("rb") as file:
        for line in file:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("event") != "leader_changed":
                continue
            leader, term, at = entry.get("leader"), entry.get("term"), entry.get("monotonic")
            who = entry.get("node", default)
            if (
                isinstance(who, str)
                and (leader is None or isinstance(leader, str))
                and type(term) is int
                and isinstance(at, int | float)
            ):
                events.append(LeaderEvent(who, leader, term, float(at)))
    return events


def check(
    events: Iterable[LeaderEvent],
    samples: Iterable[StateSample] = (),
    outages: Iterable[Outage] = (),
    span: tuple[float, float] | None = None,
) -> CheckResult:
    """Check the invariants and measure the leaderless windows.

    Args:
        events: every node's leadership events, in any order.
        samples: state-file terms read by the harness.
        outages: when nodes were down.
        span: the ``(start, end)`` within which leaderless windows are measured; by
            default from the first event to the last.

    Returns:
        The violations found, the elections and leaders seen, and the leaderless windows.
    """
    ordered = sorted(events, key=lambda e: e.monotonic)
    violations = [*_two_leaders(ordered), *_terms_decreasing(ordered, samples)]
    claims = {(e.term, e.node) for e in ordered if e.is_self}
    if span is None:
        span = (ordered[0].monotonic, ordered[-1].monotonic) if ordered else (0.0, 0.0)
    return CheckResult(
        violations=tuple(violations),
        elections=len(claims),
        leaders=tuple(sorted({node for _, node in claims})),
        leaderless=tuple(_leaderless(ordered, list(outages), span)),
    )


def _two_leaders(events: Sequence[LeaderEvent]) -> list[Violation]:
    ledger = SafetyLedger()
    # Per contested term: the first claim, then each other node's first claim.
    contested: dict[int, list[tuple[str, float]]] = {}
    for event in events:
        if not event.is_self:
            continue
        first = ledger.claim(event.node, event.term, event.monotonic)
        if first is not None:
            claims = contested.setdefault(event.term, [first])
            if all(node != event.node for node, _ in claims):
                claims.append((event.node, event.monotonic))
    return [
        Violation(
            TWO_LEADERS_IN_TERM,
            f"term {term} has leaders " + ", ".join(f"{node} (at {at:.3f})" for node, at in claims),
        )
        for term, claims in sorted(contested.items())
    ]


def _terms_decreasing(
    events: Sequence[LeaderEvent], samples: Iterable[StateSample]
) -> list[Violation]:
    timeline: dict[str, list[tuple[float, int, str]]] = collections.defaultdict(list)
    for event in events:
        timeline[event.node].append((event.monotonic, event.term, "log"))
    for sample in samples:
        timeline[sample.node].append((sample.monotonic, sample.term, "state file"))
    violations = []
    ledger = SafetyLedger()
    for node, points in sorted(timeline.items()):
        points.sort(key=lambda p: p[0])
        for at, term, where in points:
            highest = ledger.term_seen(node, term, at, where)
            if highest is not None:
                violations.append(
                    Violation(
                        TERM_DECREASED,
                        f"{node}: term {term} ({where}, at {at:.3f}) after "
                        f"term {highest[0]} ({highest[2]}, at {highest[1]:.3f})",
                    )
                )
    return violations


def _leaderless(
    events: Sequence[LeaderEvent], outages: list[Outage], span: tuple[float, float]
) -> list[tuple[float, float]]:
    start, end = span
    # Each node's leadership: from its claim until it logs another view or goes down.
    intervals: list[tuple[str, float, float]] = []
    open_claims: dict[str, float] = {}
    for event in events:
        began = open_claims.pop(event.node, None)
        if began is not None:
            intervals.append((event.node, began, event.monotonic))
        if event.is_self:
            open_claims[event.node] = event.monotonic
    intervals.extend((node, began, end) for node, began in open_claims.items())
    clipped = []
    for node, began, ended in intervals:
        for outage in outages:
            if outage.node == node and began <= outage.start < ended:
                ended = outage.start
        lo, hi = max(began, start), min(ended, end)
        if lo < hi:
            clipped.append((lo, hi))
    clipped.sort()
    windows = []
    covered_to = start
    for lo, hi in clipped:
        if lo > covered_to:
            windows.append((covered_to, lo))
        covered_to = max(covered_to, hi)
    if covered_to < end:
        windows.append((covered_to, end))
    return windows

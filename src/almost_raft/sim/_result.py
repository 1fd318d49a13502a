"""What one simulated run reports, and the log quieting a bulk run wants."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

from ._checker import Violation

__all__ = ["SeedResult", "quiet_logs"]


@dataclasses.dataclass(frozen=True, slots=True)
class SeedResult:
    """What one simulated run did, and every invariant it broke.

    Attributes:
        seed: the seed that replays this run.
        nodes: the cluster size.
        simulated_seconds: how long the run lasted in simulated time.
        heal_at: when the faults stopped and every node was brought back.
        elections_started: real elections (term raised), summed over every node.
        elections_won: elections that made a leader.
        pre_votes_started: pre-vote rounds started.
        leader_changes: how often the latest leader was a different node than the one
            before (the first leader counts).
        crashes: node crashes.
        handovers: elections a leader handed over (TimeoutNow) that the receiver started.
        leader_down_reports: times a follower acted on evidence that its leader was gone.
        early_pre_votes: times the first in line sent pre-vote requests when its
            connection to its leader ended, before any evidence.
        messages_sent: messages handed to the network (before loss and duplication).
        events: events handled (deliveries, ticks and faults).
        highest_term: the highest term any node reached.
        leader_after_heal: seconds from the heal until one leader was known to every
            node, or ``None`` if that never happened.
        liveness_bound: the bound ``leader_after_heal`` was checked against.
        violations: every broken invariant, in the order seen.
        trace_digest: a SHA-256 of every event handled, if the run was traced.
        configurations_committed: how many configuration versions leaders committed
            (each election re-commits one, and each membership change makes one).
    """

    seed: int
    nodes: int
    simulated_seconds: float
    heal_at: float
    elections_started: int
    elections_won: int
    pre_votes_started: int
    leader_changes: int
    crashes: int
    messages_sent: int
    handovers: int
    leader_down_reports: int
    events: int
    highest_term: int
    leader_after_heal: float | None
    liveness_bound: float
    violations: tuple[Violation, ...]
    trace_digest: str | None = None
    configurations_committed: int = 0
    early_pre_votes: int = 0

    @property
    def ok(self) -> bool:
        """Whether the run broke no invariant."""
        return not self.violations

    @property
    def node_seconds(self) -> float:
        """Simulated seconds times the number of nodes."""
        return self.simulated_seconds * self.nodes


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Raise the ``almost_raft`` logger to ERROR while the block runs.

    Thousands of seeds log every election at INFO and every CheckQuorum step-down at
    WARNING, on purpose; only errors are worth showing in a bulk run.
    """
    logger = logging.getLogger("almost_raft")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

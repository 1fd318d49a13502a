"""The invariants a simulated run must keep, checked as the run goes.

The checker sees what the rest of the world would see: the terms nodes report for
persisting, the roles they announce and the vote responses they actually send. It does
not look inside a core, so it catches a bug wherever it is: in the core, in the order a
batch is carried out, or in a store that forgets.
"""

from __future__ import annotations

import dataclasses

from ..core._config import ElectionConfig
from ..core._configuration import Configuration
from ._invariants import TERM_DECREASED, TWO_LEADERS_IN_TERM, SafetyLedger

__all__ = [
    "CONFIGURATION_CONFLICT",
    "CORE_ERROR",
    "DOUBLE_VOTE",
    "LEFT_UNCOMMITTED",
    "NO_LEADER_AFTER_HEAL",
    "REMOVED_MEMBER_STAYS",
    "TERM_DECREASED",
    "TWO_LEADERS_IN_TERM",
    "Checker",
    "Violation",
    "liveness_bound",
]

DOUBLE_VOTE = "double_vote"
NO_LEADER_AFTER_HEAL = "no_leader_after_heal"
CORE_ERROR = "core_error"
CONFIGURATION_CONFLICT = "configuration_conflict"
LEFT_UNCOMMITTED = "left_on_uncommitted"
REMOVED_MEMBER_STAYS = "removed_member_stays"

# Enough to tell what went wrong without letting a broken core fill memory.
_MAX_VIOLATIONS = 50


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant.

    Attributes:
        kind: ``two_leaders_in_term``, ``two_exclusive_at_once``, ``term_decreased``,
            ``double_vote``, ``configuration_conflict`` (two different configurations
            committed with the same version), ``left_on_uncommitted`` (a node left as
            removed by a configuration no leader had committed),
            ``removed_member_stays`` (a node that a committed configuration left out
            still ran at the end), ``no_leader_after_heal`` or ``core_error`` (a core
            raised; the run stopped).
        message: what happened, naming the nodes and terms.
        time: the simulated time, in seconds, at which it was seen.
    """

    kind: str
    message: str
    time: float


def liveness_bound(config: ElectionConfig, max_delay: float) -> float:
    """How long after the final heal a correct cluster may take to agree on a leader.

    The worst case has three parts: a node that heard from the old leader refuses to vote
    for one election timeout (the leader lease); a leader cut off from the majority may
    hold on for up to the longest election timeout before CheckQuorum deposes it (an
    election timeout and a round trip, see ``ElectionConfig.check_quorum``); then election
    rounds, each at most ``election_timeout_max`` plus a request and a response. Rounds
    repeat only on split votes, so their number is geometric; allowing eight gives 3.3 s
    for the default config, while 10,000 default seeds took at most 0.27 s (99.9th
    percentile 0.23 s; measured with CheckQuorum's window a round trip longer) and a cold
    start of 3,000 healthy clusters at most 0.33 s (measured before that change). A
    cluster that cannot elect exceeds any bound.

    Args:
        config: the cluster's election config.
        max_delay: the longest one-way message delay after the heal, in seconds.

    Returns:
        The bound in seconds.
    """
    low, high = config.election_timeout_range
    return low + high + 8 * (high + 2 * max_delay + config.heartbeat_interval)


class Checker:
    """Collects :class:`Violation` s of the safety invariants over one whole run.

    Safety is remembered across crashes: the leader of each term, the highest term each
    node has reported and the vote each node has sent in each term outlive the node's
    process, as they would in the real world.
    """

    __slots__ = ("_committed", "_safety", "_vote_in_term", "violations")

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self._safety = SafetyLedger()
        self._vote_in_term: dict[tuple[str, int], str] = {}
        self._committed: dict[int, tuple[str, Configuration]] = {}

    def report(self, kind: str, message: str, now: float) -> None:
        """Record a violation (up to a fixed number per run)."""
        if len(self.violations) < _MAX_VIOLATIONS:
            self.violations.append(Violation(kind, message, now))

    def term_seen(self, node: str, term: int, now: float) -> None:
        """``node`` now has ``term``: it must not be lower than any term it had before."""
        highest = self._safety.term_seen(node, term, now)
        if highest is not None:
            self.report(
                TERM_DECREASED, f"{node} went from term {highest[0]} back to term {term}", now
            )

    def became_leader(self, node: str, term: int, now: float) -> None:
        """``node`` announced itself leader of ``term``: Election Safety (Raft 5.2)."""
        earlier = self._safety.claim(node, term, now)
        if earlier is not None:
            self.report(
                TWO_LEADERS_IN_TERM,
                f"{earlier[0]} and {node} both became leader of term {term}",
                now,
            )

    def vote_sent(self, voter: str, candidate: str, term: int, now: float) -> None:
        """``voter`` sent a granted vote to ``candidate`` in ``term``: one vote per term."""
        earlier = self._vote_in_term.setdefault((voter, term), candidate)
        if earlier != candidate:
            self.report(
                DOUBLE_VOTE,
                f"{voter} voted for {earlier} and then for {candidate} in term {term}",
                now,
            )

    @property
    def versions_committed(self) -> int:
        """How many configuration versions were seen committed."""
        return len(self._committed)

    def configuration_committed(self, node: str, config: Configuration, now: float) -> None:
        """``node``, as leader, found ``config`` committed: one configuration per version.

        Two different member lists committed with the same version mean two chains of
        configurations, and with them majorities that need not overlap.
        """
        earlier = self._committed.setdefault(config.version, (node, config))
        if not earlier[1].same_members(config):
            self.report(
                CONFIGURATION_CONFLICT,
                f"{earlier[0]} committed {earlier[1].describe()} and {node} committed "
                f"{config.describe()}",
                now,
            )

    def left_as_removed(self, node: str, config: Configuration, now: float) -> None:
        """``node`` left the election because ``config`` does not hold it.

        Only a committed configuration may make a member leave: one still pending can
        lose to one that keeps the member (a leader that never had it wins), and the
        member would be gone from a cluster that still counts on it.
        """
        committed = self._committed.get(config.version)
        if committed is None or not committed[1].same_members(config):
            self.report(
                LEFT_UNCOMMITTED,
                f"{node} left as removed by {config.describe()}, which no leader had committed",
                now,
            )

    def removed_member_ran(
        self, node: str, committed: Configuration, since: float, *, end: float, bound: float
    ) -> None:
        """``node`` still ran at ``end``, running since ``since``, though ``committed``
        (the newest leader's committed configuration) left it out.

        A removed member must learn it and leave, however it missed the commit: it can
        never be elected, and asks for votes for ever. One that started within ``bound``
        of the end may still be learning it.
        """
        if end - since > bound:
            self.report(
                REMOVED_MEMBER_STAYS,
                f"{node} still ran at {end:.2f}s (since {since:.2f}s), though the "
                f"committed configuration {committed.describe()} left it out",
                end,
            )

    def leader_after_heal(
        self, converged_at: float | None, *, nodes: int, heal_at: float, end: float, bound: float
    ) -> None:
        """Liveness: one leader known to all ``nodes`` within ``bound`` of the heal.

        ``converged_at`` is when that happened, or ``None`` if it had not happened when
        the run ended at ``end``.
        """
        if converged_at is None:
            self.report(
                NO_LEADER_AFTER_HEAL,
                f"no leader known to all {nodes} nodes in the {end - heal_at:.2f}s "
                f"after the heal at {heal_at:.2f}s (bound {bound:.2f}s)",
                end,
            )
        elif converged_at - heal_at > bound:
            self.report(
                NO_LEADER_AFTER_HEAL,
                f"a leader known to all nodes took {converged_at - heal_at:.3f}s after the "
                f"heal, over the bound of {bound:.3f}s",
                converged_at,
            )

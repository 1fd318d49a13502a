"""The stickiness checker: no node helps depose a leader it still hears.

PreVote (thesis 9.6) keeps a healthy leader: a node that heard its leader within the
election timeout neither starts an election nor grants a pre-vote, so a node returning
from a partition cannot gather a majority against a leader that a majority still hears.
Evidence that the leader's process is gone (the transport's refused redial, true or
false) lifts both rules, and a leader's own hand-over lifts the first. A connection with
the leader that ended, and no word from the leader since, lifts the second for one
candidate only, the first in line to succeed that leader, whose own count still waits for
evidence; it lifts the first rule for no one.

The checker follows what each node was told from outside: the heartbeats it accepted
(on its own clock, as the core times them), the evidence it was given, its crashes
(which wipe what it heard). It flags a node that starts a real election, other than a
handed-over one, or grants a pre-vote, while the last leader it accepted in its current
term was heard within ``election_timeout`` on its clock and no evidence against that
leader came since (for a pre-vote granted to the first in line: nor did its connection
with that leader end since).
"""

from __future__ import annotations

from ..core._leader_down import campaign_turn
from ._checker import Checker

__all__ = ["DEPOSED_HEARD_LEADER", "StickinessChecker"]

DEPOSED_HEARD_LEADER = "deposed_heard_leader"


class StickinessChecker:
    """Follows what each node heard of its leader and reports to a :class:`Checker`.

    Args:
        checker: where violations go.
        election_timeout: the config's minimum election timeout, in seconds.
    """

    __slots__ = ("_checker", "_ended", "_heard", "_timeout")

    def __init__(self, checker: Checker, election_timeout: float) -> None:
        self._checker = checker
        self._timeout = election_timeout
        # Per node: the leader it last accepted a heartbeat from, that term, and when on
        # the node's own clock.
        self._heard: dict[str, tuple[str, int, float]] = {}
        # Per node and peer: when, on the node's clock, a connection between them last ended.
        self._ended: dict[tuple[str, str], float] = {}

    def heard(self, node: str, leader: str, term: int, local: float) -> None:
        """``node`` accepted a heartbeat of ``term`` from ``leader`` at ``local``."""
        self._heard[node] = (leader, term, local)

    def told_gone(self, node: str, about: str) -> None:
        """``node`` was given evidence that ``about``'s process is gone."""
        heard = self._heard.get(node)
        if heard is not None and heard[0] == about:
            del self._heard[node]

    def told_ended(self, node: str, about: str, local: float) -> None:
        """``node`` was told at ``local`` that a connection with ``about`` ended."""
        self._ended[node, about] = local

    def crashed(self, node: str) -> None:
        """``node``'s process died: a restarted one remembers no leader."""
        self._heard.pop(node, None)
        for key in [key for key in self._ended if key[0] == node]:
            del self._ended[key]

    def campaigned(self, node: str, term: int, local: float, now: float) -> None:
        """``node`` raised its term to ``term`` for an election of its own making."""
        leader = self._still_heard(node, term - 1, local)
        if leader is not None:
            self._report(node, f"started an election for term {term}", leader, now)

    def granted_pre_vote(
        self,
        node: str,
        node_term: int,
        candidate: str,
        term: int,
        local: float,
        now: float,
        voters: frozenset[str],
    ) -> None:
        """``node``, in ``node_term``, granted ``candidate`` a pre-vote for ``term``;
        ``voters`` are the voting members in ``node``'s configuration."""
        leader = self._still_heard(node, node_term, local)
        if leader is None or self._successor_after_end(node, candidate, term, voters):
            return
        self._report(node, f"granted {candidate} a pre-vote for term {term}", leader, now)

    def _successor_after_end(
        self, node: str, candidate: str, term: int, voters: frozenset[str]
    ) -> bool:
        """Whether ``node``'s connection with the leader it heard ended since, and
        ``candidate`` is the first in line to succeed that leader, asking for the next term."""
        heard = self._heard[node]
        ended = self._ended.get((node, heard[0]))
        if ended is None or ended < heard[2] or term != heard[1] + 1:
            return False
        survivors = sorted((voters | {node}) - {heard[0]})
        return candidate in survivors and campaign_turn(survivors, candidate, heard[1]) == 0

    def _still_heard(self, node: str, term: int, local: float) -> tuple[str, float] | None:
        """The leader of ``term`` that ``node`` heard within the timeout, and how long ago."""
        heard = self._heard.get(node)
        if heard is None or heard[1] != term:
            return None
        ago = local - heard[2]
        return (heard[0], ago) if ago < self._timeout else None

    def _report(self, node: str, what: str, leader: tuple[str, float], now: float) -> None:
        who, ago = leader
        self._checker.report(
            DEPOSED_HEARD_LEADER,
            f"{node} {what} {ago * 1000:.1f} ms after it heard its leader {who} (election "
            f"timeout {self._timeout * 1000:g} ms), with no evidence that {who} was gone",
            now,
        )

"""What a follower keeps while it has evidence that its leader's process is gone.

The transport reports a refused redial after a broken connection as evidence that a
peer's process died (see :meth:`ElectionCore.peer_unreachable`). A follower that gets
such evidence about its leader campaigns in a turn instead of after a full election
timeout, and for a while it also retries elections after short waits. This module holds
that state and the arithmetic of the turns, free of the rest of the election.

The first in line does not wait for that evidence to ask: when its connection to the
leader merely ends (:meth:`ElectionCore.peer_disconnected`, a round trip before a redial
can be refused), it sends its pre-vote requests at once. The other followers hold them
until their own connection to the leader ends or their own evidence comes, and answer
then: the grants are back before the first in line's own evidence. This module keeps
those early answers until the evidence arrives (:class:`EarlyAsk`); nothing counts them
before.

A voter whose own connection to the leader has ended too, and that has not heard the
leader since, grants those early requests at once rather than at its evidence: a
pre-vote changes nothing, and the asker still counts the grants only on evidence of its
own. This module keeps when the voter's connection ended (:meth:`LeaderDown.ended_since`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from ._config import ElectionConfig
from ._messages import RequestVote

__all__ = ["EarlyAsk", "LeaderDown", "campaign_turn", "turn_wait"]


class EarlyAsk:
    """Pre-vote requests sent before this node had evidence of its own, and their answers.

    ``term`` is the term the requests asked about, ``at`` when they left and ``asked``
    whom they went to; ``answers`` maps each voter that answered to whether it granted,
    the first answer winning, as in a campaign.
    """

    __slots__ = ("answers", "asked", "at", "term")

    def __init__(self, term: int, at: float, asked: frozenset[str]) -> None:
        self.term = term
        self.at = at
        self.asked = asked
        self.answers: dict[str, bool] = {}


class LeaderDown:
    """The leader-down window of one node, and the vote requests held for it.

    ``until`` is the time until which elections retry after short waits; ``-inf`` when no
    leader is known to be down. :meth:`end` is the one way the window closes, so every
    path that learns of a live leader forgets the held requests, and an early ask, too.
    """

    __slots__ = ("_early", "_ended", "_held", "until")

    def __init__(self) -> None:
        self.until = -math.inf
        # The latest vote request per candidate that was refused only because a leader
        # seemed alive, with the time it came.
        self._held: dict[str, tuple[RequestVote, float]] = {}
        # This node's own pre-vote requests sent before it had evidence, if any.
        self._early: EarlyAsk | None = None
        # The leader, term and time of this node's latest connection end with its leader.
        self._ended: tuple[str, int, float] | None = None

    def active(self, now: float) -> bool:
        """Whether the leader is known to be down at ``now``."""
        return now < self.until

    def begin(
        self,
        now: float,
        survivors: Sequence[str],
        node_id: str,
        term: int,
        config: ElectionConfig,
        rng: random.Random,
        step: float,
    ) -> float:
        """Evidence that ``term``'s leader is gone arrived at ``now``; return the wait.

        All followers see the same evidence at about the same moment, so a random delay
        alone would have them campaign together and split the vote. Instead they take
        turns: the ``survivors`` (sorted, this node among them), in an order that every
        node derives from the term (and so rotates from one failover to the next),
        campaign ``step`` apart (the ``leader_down_delay`` in force, measured unless it is
        set), each with a random part of up to half that step. The first in line usually
        wins before the second starts; it campaigns at once, and has often asked for its
        pre-votes already, when its connection to the leader ended (:meth:`ask_early`).

        Until a leader is known again, or for one long timeout at most, elections then
        retry after short waits: a split vote costs a few round trips, not a full
        election timeout. Safety never rests on timing.
        """
        self.until = now + config.election_timeout_range[1]
        turn = campaign_turn(survivors, node_id, term)
        return turn_wait(turn, step, rng)

    def end(self) -> None:
        """A leader is known again: close the window and forget what was held."""
        self.until = -math.inf
        self._held.clear()
        self._early = None
        self._ended = None

    def connection_ended(self, leader: str, term: int, now: float) -> None:
        """The connection between this node and ``leader`` of ``term`` ended at ``now``."""
        self._ended = (leader, term, now)

    def ended_since(self, leader: str, term: int, contact: float) -> bool:
        """Whether a connection with ``leader`` of ``term`` ended at or after ``contact``,
        the last time this node heard it: the leader may be gone, and has not said
        otherwise since."""
        ended = self._ended
        return ended is not None and ended[:2] == (leader, term) and ended[2] >= contact

    def ask_early(self, term: int, now: float, asked: frozenset[str]) -> None:
        """This node sent pre-vote requests for ``term`` to ``asked`` at ``now``, before
        it had evidence of its own."""
        self._early = EarlyAsk(term, now, asked)

    def asked_early(self, term: int) -> bool:
        """Whether this node's early pre-vote requests for ``term`` are outstanding."""
        early = self._early
        return early is not None and early.term == term

    def answered_early(self, voter: str, granted: bool, term: int) -> bool:
        """Record ``voter``'s answer to the early requests for ``term``; False if there
        are none (the answer is then to something else)."""
        early = self._early
        if early is None or early.term != term:
            return False
        early.answers.setdefault(voter, granted)
        return True

    def take_early(self, term: int) -> EarlyAsk | None:
        """The early ask for ``term``, if there is one; it is forgotten either way."""
        early, self._early = self._early, None
        return early if early is not None and early.term == term else None

    def hold(self, request: RequestVote, now: float) -> None:
        """Keep ``request``, refused only because a leader seemed alive.

        Every follower learns that the leader's process is gone within moments of the
        others, but not at the same instant; a candidate that learned first would
        otherwise have its requests dropped by followers a millisecond behind it and wait
        a retry. Held for one ``leader_down_delay`` (the one in force), the latest request
        per candidate (this one replaces any older) is looked at again when this node gets
        evidence of its own. Nothing is granted on the candidate's word: the request then
        passes the same rules as any other.
        """
        self._held[request.candidate_id] = (request, now)

    def take_pre_vote(self, candidate: str, now: float, max_age: float) -> RequestVote | None:
        """Return ``candidate``'s held pre-vote request if it is at most ``max_age`` old,
        and hold it no more; its other requests, and everyone else's, stay held."""
        held = self._held.get(candidate)
        if held is None or not held[0].pre_vote or now - held[1] > max_age:
            return None
        del self._held[candidate]
        return held[0]

    def take_fresh(self, now: float, max_age: float) -> list[RequestVote]:
        """Return the held requests at most ``max_age`` old, and hold nothing more."""
        fresh = [request for request, at in self._held.values() if now - at <= max_age]
        self._held.clear()
        return fresh


def campaign_turn(survivors: Sequence[str], node_id: str, term: int) -> int:
    """This node's place (0 first) among ``survivors`` (sorted) after ``term``'s leader died.

    Every node derives the same order from the term, so it rotates from one failover to
    the next and no node is always first.
    """
    return (survivors.index(node_id) + term) % len(survivors)


def turn_wait(turn: int, step: float, rng: random.Random) -> float:
    """How long the node in ``turn`` waits before it campaigns.

    The first in line starts at once: the others learn of the crash within moments, and
    a vote request that reaches them first is held, not refused. Each later turn starts
    ``step`` after the one before, with a random part of up to half a step.
    """
    return step * (turn + 0.5 * rng.random()) if turn else 0.0

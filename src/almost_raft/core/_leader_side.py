"""What a leader keeps: when each peer last answered, and its two deadlines.

A small state object, so the leader's bookkeeping for heartbeats and CheckQuorum
(thesis 6.2) reads apart from the rest of the election. It knows nothing of terms or
roles; :class:`~almost_raft.ElectionCore` decides when it applies.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from ._quorum import quorum_heard_since

__all__ = ["LeaderSide"]


class LeaderSide:
    """A leader's answers and deadlines; everything is cleared when leadership ends.

    ``answered_at`` maps a peer to the last time it answered this leader (a granted vote
    or a heartbeat response). ``heartbeat_deadline`` is when the next heartbeat is due,
    ``quorum_deadline`` when CheckQuorum next looks at the answers; both are ``inf`` on a
    node that does not lead.
    """

    __slots__ = ("answered_at", "heartbeat_deadline", "quorum_deadline")

    def __init__(self) -> None:
        self.answered_at: dict[str, float] = {}
        self.heartbeat_deadline = math.inf
        self.quorum_deadline = math.inf

    @property
    def next_deadline(self) -> float:
        """The earlier of the two deadlines."""
        # Read on every input: a comparison costs less than a call of min().
        heartbeat, quorum = self.heartbeat_deadline, self.quorum_deadline
        return quorum if quorum < heartbeat else heartbeat

    def start(self, voters: Collection[str], now: float, quorum_timeout: float | None) -> None:
        """Leadership begins at ``now``; the ``voters`` that elected it count as answers.

        ``quorum_timeout`` is the election timeout when CheckQuorum is on, else ``None``:
        without CheckQuorum a leader keeps its role until it sees a higher term.
        """
        self.answered_at = dict.fromkeys(voters, now)
        if quorum_timeout is not None:
            self.quorum_deadline = now + quorum_timeout

    def clear(self) -> None:
        """Leadership ended: forget the answers and disarm both deadlines."""
        self.answered_at.clear()
        self.heartbeat_deadline = self.quorum_deadline = math.inf

    def answered(self, peer: str, now: float) -> None:
        """``peer`` answered at ``now``."""
        self.answered_at[peer] = now

    def quorum_deadline_after(
        self, voters: Collection[str], node_id: str, now: float, timeout: float
    ) -> float:
        """When the leader must step down unless more answers come (CheckQuorum).

        Each peer counts by its latest answer, so a leader cut off goes one timeout after
        the last answer that completed a majority; the followers' own timeouts began no
        earlier than they sent those answers. The leader counts itself as heard at
        ``now``. Returned as a deadline, so that float rounding can never give one that
        has already passed (the caller would call tick again at the same time forever).
        """
        heard_at = {**self.answered_at, node_id: now}
        return quorum_heard_since(voters, heard_at) + timeout

    def heard_within(self, voters: Collection[str], node_id: str, now: float, span: float) -> int:
        """How many of ``voters`` (the leader itself included) answered within ``span``."""
        heard_at = {**self.answered_at, node_id: now}
        return sum(1 for voter in voters if heard_at.get(voter, -math.inf) > now - span)

    def freshest(self, peers: Collection[str]) -> str | None:
        """The peer that answered most recently (ties by id), or ``None`` with no peers."""
        if not peers:
            return None
        return max(sorted(peers), key=lambda peer: self.answered_at.get(peer, -math.inf))

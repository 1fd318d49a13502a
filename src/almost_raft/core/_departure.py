"""What a node keeps while it leaves the election after handing leadership over.

A leader that leaves at once would show its peers a refused connection, which they take
as evidence of a crash (see :meth:`ElectionCore.peer_unreachable`): they would campaign
against the successor it had just named. So a leaving leader hands over and stays a
while, answering as a follower that never campaigns, until the successor is known to
lead. This module holds that wait and decides when it is over.
"""

from __future__ import annotations

import math

__all__ = ["Departure"]


class Departure:
    """The leave of one node: from which term, and by when it terminates.

    ``term`` is the term the node led when it handed over, or ``None`` while it is not
    leaving. ``deadline`` is when it terminates: an election timeout after the hand-over
    at first, so a lost hand-over still ends the leave, and one heartbeat after a leader
    of a newer term is known.
    """

    __slots__ = ("deadline", "term")

    def __init__(self) -> None:
        self.term: int | None = None
        self.deadline = math.inf

    @property
    def active(self) -> bool:
        """Whether the node is leaving."""
        return self.term is not None

    def begin(self, term: int, now: float, timeout: float) -> None:
        """The leader of ``term`` handed over at ``now``; it leaves by ``now + timeout``."""
        self.term = term
        self.deadline = now + timeout

    def observe(self, leader_id: str | None, term: int, now: float, linger: float) -> None:
        """The node now knows ``leader_id`` as leader of ``term``.

        Once that is a leader of a newer term than the one handed over, the node stays
        ``linger`` more, so that the successor's first heartbeats reach the others before
        they see this node's connections close and spend their time on them.
        """
        if self.term is not None and leader_id is not None and term > self.term:
            self.deadline = min(self.deadline, now + linger)

    def due(self, now: float) -> bool:
        """Whether the leave is over at ``now``."""
        return now >= self.deadline

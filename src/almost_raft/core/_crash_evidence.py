"""Crash evidence in :class:`ElectionCore`: the transport reports a leader's process gone.

:class:`ElectionCore` inherits this. A follower that learns its leader's process is gone
campaigns after a short delay, in a turn shared out among the survivors, and replays the
vote requests it refused only because that leader seemed alive (see ``_leader_down`` for
the bookkeeping, which holds no core state).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from ._messages import RequestVote
from ._state import NodeState

if TYPE_CHECKING:
    import random

    from ._config import ElectionConfig
    from ._leader_down import LeaderDown
    from ._messages import PeerMessage
    from ._outputs import CoreMetrics
    from ._round_trip import RoundTrips

__all__ = ["CrashEvidence"]

logger = logging.getLogger("almost_raft.core")


class CrashEvidence:
    """The crash-evidence input of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        metrics: CoreMetrics
        round_trips: RoundTrips
        _rng: random.Random
        _now: float
        _term: int
        _role: NodeState
        _leader_id: str | None
        _leader_contact: float
        _leader_down: LeaderDown
        _election_deadline: float

        def _may_campaign(self) -> bool: ...
        def _voters(self) -> set[str]: ...
        def _other_voters(self) -> set[str]: ...
        def _accept(self, message: PeerMessage) -> bool: ...
        def _on_vote_request(self, request: RequestVote) -> None: ...

    def _leader_process_gone(self, peer_id: str) -> None:
        """Act on :meth:`ElectionCore.peer_unreachable` if ``peer_id`` is this node's leader."""
        now = self._now
        delay = self._leader_down_spacing()
        if (
            delay > 0
            and peer_id == self._leader_id
            and self._role is NodeState.FOLLOWER
            and peer_id != self.node_id
            and self._may_campaign()
        ):
            logger.info(
                "%s: leader %s of term %d is down; campaigning soon",
                self.node_id,
                peer_id,
                self._term,
            )
            self.metrics.leader_down_reports += 1
            self._leader_id = None
            self._leader_contact = -math.inf
            # This node among them: a member its newest configuration removes campaigns too.
            survivors = sorted((self._voters() | {self.node_id}) - {peer_id})
            wait = self._leader_down.begin(
                now, survivors, self.node_id, self._term, self.config, self._rng, delay
            )
            self._election_deadline = min(self._election_deadline, now + wait)
            self._replay_held_vote_requests(now)

    def _hold_vote_request(self, request: RequestVote) -> None:
        """Keep a vote request refused only because the leader seemed alive (see LeaderDown)."""
        if self._leader_down_spacing() > 0 and request.candidate_id in self._other_voters():
            self._leader_down.hold(request, self._now)

    def _replay_held_vote_requests(self, now: float) -> None:
        for request in self._leader_down.take_fresh(now, self._leader_down_spacing()):
            if self._accept(request):
                self._on_vote_request(request)

    def _leader_down_spacing(self) -> float:
        """The ``leader_down_delay`` in force: fixed, or from the measured round trips."""
        return self.config.leader_down_spacing(
            self.round_trips.election_round(self._other_voters(), self._now)
        )

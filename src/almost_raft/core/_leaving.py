"""Leaving and handing over in :class:`ElectionCore`: the end of a node's part.

:class:`ElectionCore` inherits this. A leader hands over by telling one voter to campaign
at once (:class:`TimeoutNow`, thesis 3.10) and becoming a follower; a node that leaves
after handing over stays on as a follower that never campaigns until a successor is heard
of (see ``_departure``), then terminates. The receiving side, which campaigns on a
:class:`TimeoutNow`, is here too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._messages import MAX_TERM, TimeoutNow
from ._state import NodeState

if TYPE_CHECKING:
    from ._config import ElectionConfig
    from ._departure import Departure
    from ._leader_side import LeaderSide
    from ._messages import PeerMessage
    from ._outputs import CoreMetrics

__all__ = ["Leaving"]

logger = logging.getLogger("almost_raft.core")


class Leaving:
    """The leaving half of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        metrics: CoreMetrics
        _now: float
        _term: int
        _role: NodeState
        _leader_id: str | None
        _leader_side: LeaderSide
        _departure: Departure
        _election_deadline: float

        def _known_peers(self) -> int: ...
        def _may_campaign(self) -> bool: ...
        def _other_voters(self) -> frozenset[str]: ...
        def _send(self, to: str, message: PeerMessage) -> None: ...
        def _drop(self, reason: str, message: PeerMessage) -> bool: ...
        def _become_follower(self, term: int, leader_id: str | None) -> None: ...
        def _become_terminating(self) -> None: ...
        def _become_candidate(self, *, transfer: bool = False) -> None: ...

    def _leave(self, hand_over: bool) -> None:
        """Carry out :meth:`ElectionCore.leave`."""
        if self._role is NodeState.TERMINATING or self._departure.active:
            return
        if hand_over and self._role is NodeState.LEADER and self._other_voters():
            term = self._term
            logger.info("%s: leaving the election", self.node_id)
            self._hand_over(None)
            self._departure.begin(term, self._now, self.config.election_timeout)
        else:
            self._terminate()

    def _hand_over(self, to: str | None) -> None:
        voters = self._other_voters()
        target = to if to is not None else self._leader_side.freshest(voters)
        if target is not None and target in voters:
            logger.info(
                "%s: handing leadership of term %d over to %s", self.node_id, self._term, target
            )
            self._send(target, TimeoutNow(self._term, self.node_id))
        else:
            logger.info("%s: stepping down as leader of term %d", self.node_id, self._term)
        self._become_follower(self._term, None)
        self._election_deadline += self.config.election_timeout_range[1]

    def _terminate(self) -> None:
        if self._role is not NodeState.TERMINATING:
            logger.info("%s: terminating at term %d", self.node_id, self._term)
            self._become_terminating()

    def _on_timeout_now(self, message: TimeoutNow) -> None:
        if self._leader_id not in (None, message.leader_id):
            self._drop("conflicting_leader", message)
        elif self._departure.active:
            self._drop("leaving", message)
        elif (
            self._term >= MAX_TERM
            or self._known_peers() < self.config.min_peers
            or not self._may_campaign()
        ):
            self._drop("cannot_campaign", message)
        else:
            logger.info(
                "%s: %s handed leadership of term %d over",
                self.node_id,
                message.leader_id,
                message.term,
            )
            self.metrics.handovers_received += 1
            self._become_candidate(transfer=True)

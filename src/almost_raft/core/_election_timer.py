"""The election timer of :class:`ElectionCore`: what its firing does, and its next draw.

:class:`ElectionCore` inherits this. A follower that heard no leader for its timeout, or a
candidate whose round ran out, campaigns (with a pre-vote first, where PreVote is on),
unless it may not: a non-voter asks whether it still is a member, and a node with too few
peers, or at the largest term, waits. While the leader is known down the next timeout is
drawn from the short ``leader_down_delay`` range (see ``_leader_down``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._timers import TimeoutAction, election_timeout_action, random_timeout

if TYPE_CHECKING:
    import random

    from ._config import ElectionConfig
    from ._leader_down import LeaderDown

__all__ = ["ElectionTimer"]

logger = logging.getLogger("almost_raft.core")


class ElectionTimer:
    """The election timer of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        _rng: random.Random
        _now: float
        _term: int
        _leader_down: LeaderDown
        _election_deadline: float

        def _known_peers(self) -> int: ...
        def _may_campaign(self) -> bool: ...
        def _other_voters(self) -> frozenset[str]: ...
        def _ask_whether_member(self) -> None: ...
        def _leader_down_spacing(self) -> float: ...
        def _become_follower(self, term: int, leader_id: str | None) -> None: ...
        def _become_pre_candidate(self) -> None: ...
        def _become_candidate(self, *, transfer: bool = False) -> None: ...

    def _on_election_timeout(self) -> None:
        action = election_timeout_action(self._term, self._known_peers(), self.config)
        if not self._may_campaign():
            # A non-voter, or a member whose removal it knows committed: it never
            # campaigns, but it asks whether it still is a member (see _removal).
            self._become_follower(self._term, None)
            self._ask_whether_member()
        elif action is TimeoutAction.TERM_EXHAUSTED:
            logger.error(
                "%s: term %d is the largest a message can carry; no further election is "
                "possible in this cluster",
                self.node_id,
                self._term,
            )
            self._become_follower(self._term, None)
        elif action is TimeoutAction.TOO_FEW_PEERS:
            logger.debug(
                "%s: %d of min_peers=%d peers known; not starting an election",
                self.node_id,
                len(self._other_voters()),
                self.config.min_peers,
            )
            # The timer fired, so no leader was heard for an election timeout, and a
            # campaign under way can no longer go on: wait as a follower with no leader.
            self._become_follower(self._term, None)
        elif action is TimeoutAction.PRE_VOTE:
            self._become_pre_candidate()
        else:
            self._become_candidate()

    def _random_timeout(self) -> float:
        if self._leader_down.active(self._now):
            return random_timeout(self.config, self._rng, True, self._leader_down_spacing())
        return random_timeout(self.config, self._rng, False)

    def _reset_election_deadline(self) -> None:
        self._election_deadline = self._now + self._random_timeout()

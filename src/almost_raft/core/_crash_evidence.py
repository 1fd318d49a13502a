"""Crash evidence in :class:`ElectionCore`: the transport reports a leader's process gone.

:class:`ElectionCore` inherits this. A follower that learns its leader's process is gone
campaigns after a short delay, in a turn shared out among the survivors (the first in
line at once), and replays the vote requests it refused only because that leader seemed
alive (see ``_leader_down`` for the bookkeeping, which holds no core state).

The first in line also acts on a weaker sign, a round trip before the evidence: its
connection to the leader ended (:meth:`ElectionCore.peer_disconnected`). It then sends
its pre-vote requests early, and changes nothing else: it keeps its term and its leader,
refuses other candidates as before, and only records the answers. Once its own evidence
arrives it campaigns with those answers as if it had asked then; a connection that
merely blipped costs requests that the voters hold and forget at the leader's next
heartbeat. A voter whose own connection to that leader ended as well, and that has
not heard it since, grants those early requests at once (the first in line's, and only
for the next term): a pre-vote changes no term and no vote, and the asker's count still
waits for its own evidence. So a real vote still rests on the voter's own evidence or
expired timer, and the candidate's count on its own evidence: a connection's end is never
evidence, and it lifts the pre-vote rule only for the one node that would succeed.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from ._leader_down import campaign_turn
from ._messages import RequestVote, RequestVoteResponse
from ._state import NodeState
from ._timers import TimeoutAction, election_timeout_action
from ._vote_rules import vote_response_is_current

if TYPE_CHECKING:
    import random

    from ._config import ElectionConfig
    from ._departure import Departure
    from ._leader_down import EarlyAsk, LeaderDown
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
        _departure: Departure
        _election_deadline: float

        def _may_campaign(self) -> bool: ...
        def _known_peers(self) -> int: ...
        def _voters(self) -> set[str]: ...
        def _other_voters(self) -> frozenset[str]: ...
        def _accept(self, message: PeerMessage) -> bool: ...
        def _on_vote_request(self, request: RequestVote) -> None: ...
        def _on_election_timeout(self) -> None: ...
        def _with_configuration(self, request: RequestVote) -> RequestVote: ...
        def _send(self, to: str, message: PeerMessage) -> None: ...

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
            if (
                self._election_deadline <= now
                and self._role is NodeState.FOLLOWER
                and not self._departure.active
            ):
                # The first in line, unless it just granted a held request: campaign in
                # this input rather than at the next tick, which in a runtime is one more
                # turn of its event loop.
                self._on_election_timeout()

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

    def _leader_connection_ended(self, peer_id: str) -> None:
        """Act on :meth:`ElectionCore.peer_disconnected`: the first in line asks early,
        and the others answer its early requests."""
        if self._notes_connection_end(peer_id):
            self._leader_down.connection_ended(peer_id, self._term, self._now)
            successor = self._first_in_line()
            held = None
            if successor is not None and successor != self.node_id:
                held = self._leader_down.take_pre_vote(
                    successor, self._now, self._leader_down_spacing()
                )
            if held is not None and self._accept(held):
                self._on_vote_request(held)
        if not self._asks_early_about(peer_id):
            return
        term = self._term + 1
        logger.info(
            "%s: connection to leader %s of term %d ended; sending pre-vote requests early",
            self.node_id,
            peer_id,
            self._term,
        )
        self.metrics.early_pre_votes += 1
        voters = self._other_voters()
        self._leader_down.ask_early(term, self._now, frozenset(voters))
        request = self._with_configuration(
            RequestVote(term, self.node_id, pre_vote=True, transfer=False)
        )
        for peer in sorted(voters):
            # Its answer waits for the voter's own evidence: no round trip to time.
            self.round_trips.vote_untimed(peer)
            self._send(peer, request)

    def _notes_connection_end(self, peer_id: str) -> bool:
        """Whether the end of a connection with ``peer_id`` is kept: it leads this
        follower, and PreVote and CheckQuorum are on (see :meth:`_asks_early_about`)."""
        return (
            self.config.pre_vote
            and self.config.check_quorum
            and peer_id == self._leader_id
            and peer_id != self.node_id
            and self._role is NodeState.FOLLOWER
        )

    def _first_in_line(self) -> str | None:
        """Who campaigns first if this node's leader is gone, by this node's view."""
        leader = self._leader_id
        if leader is None:
            return None
        survivors = sorted((self._voters() | {self.node_id}) - {leader})
        if not survivors:
            return None
        return survivors[-self._term % len(survivors)]

    def _leader_gone_sign(self, request: RequestVote) -> bool:
        """Whether ``request`` is a pre-vote this follower grants although it heard its
        leader within the timeout: it is the first in line's, for the next term, and this
        node's own connection to the leader ended since it last heard it."""
        leader = self._leader_id
        return (
            request.pre_vote
            and leader is not None
            and request.term == self._term + 1
            and self._role is NodeState.FOLLOWER
            and self._leader_down.ended_since(leader, self._term, self._leader_contact)
            and request.candidate_id == self._first_in_line()
        )

    def _asks_early_about(self, peer_id: str) -> bool:
        """Whether this node sends pre-vote requests now that its connection to
        ``peer_id`` ended: ``peer_id`` leads it, and this node is first in line.

        Only with PreVote and CheckQuorum: without the leader lease a voter refuses a
        request it cannot grant yet instead of holding it, and without PreVote there is
        nothing to ask that changes no term.
        """
        config = self.config
        if not (config.pre_vote and config.check_quorum):
            return False
        if (
            peer_id != self._leader_id
            or peer_id == self.node_id
            or self._role is not NodeState.FOLLOWER
            or self._departure.active
            or not self._may_campaign()
            or self._leader_down.asked_early(self._term + 1)
        ):
            return False
        action = election_timeout_action(self._term, self._known_peers(), config)
        if action is not TimeoutAction.PRE_VOTE or self._leader_down_spacing() <= 0:
            return False
        survivors = sorted((self._voters() | {self.node_id}) - {peer_id})
        return campaign_turn(survivors, self.node_id, self._term) == 0

    def _on_early_answer(self, response: RequestVoteResponse) -> None:
        """A follower got an answer to a pre-vote: keep it if it answers its early ask.

        Anything else is a late answer to a campaign this node gave up, ignored as
        followers always ignored them.
        """
        if response.pre_vote and vote_response_is_current(response, self._term, pre_candidate=True):
            self._leader_down.answered_early(response.voter_id, response.granted, self._term + 1)

    def _early_ask(self) -> EarlyAsk | None:
        """The early pre-vote requests for the next term, if their answers may stand in
        for the requests of the pre-vote round this node starts now; the early ask is
        over either way.

        Only with evidence of its own (the leader-down window is open): a round that
        the election timer started asks afresh. The answers cannot be older than an
        election timeout, as the timer would have fired first.
        """
        early = self._leader_down.take_early(self._term + 1)
        return early if self._leader_down.active(self._now) else None

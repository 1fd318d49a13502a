"""The vote exchange of :class:`ElectionCore`: a voter's answer, a candidate's requests
and its count.

:class:`ElectionCore` inherits this, as it does :class:`Reconfiguration`: both halves
read and change the core's term, vote and role throughout. The rules a vote follows are
pure functions in ``_vote_rules``; this module applies them to the node's state (Rules 2
to 5 of ``_state_machine``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._lease import stretched
from ._messages import RequestVote, RequestVoteResponse
from ._quorum import VoteResult
from ._state import NodeState
from ._timers import random_timeout
from ._vote_rules import grants_vote, vote_response_is_current

if TYPE_CHECKING:
    import random

    from ._batch import BatchBuilder
    from ._campaign import Campaign
    from ._config import ElectionConfig
    from ._leader_down import EarlyAsk, LeaderDown
    from ._lease import Promise
    from ._messages import PeerMessage
    from ._round_trip import RoundTrips

__all__ = ["Votes"]

logger = logging.getLogger("almost_raft.core")


class Votes:
    """The voting half of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        round_trips: RoundTrips
        _rng: random.Random
        _now: float
        _term: int
        _voted_for: str | None
        _role: NodeState
        _leader_id: str | None
        _leader_contact: float
        _leader_down: LeaderDown
        _campaign: Campaign
        _promise: Promise
        _exclusive_after: float
        _election_deadline: float
        _batch: BatchBuilder

        def _configuration_refuses(self, request: RequestVote) -> bool: ...
        def _with_configuration(self, request: RequestVote) -> RequestVote: ...
        def _other_voters(self) -> frozenset[str]: ...
        def _reset_election_deadline(self) -> None: ...
        def _early_ask(self) -> EarlyAsk | None: ...
        def _leader_gone_sign(self, request: RequestVote) -> bool: ...
        def _voters(self) -> set[str]: ...
        def _send(self, to: str, message: PeerMessage) -> None: ...
        def _drop(self, reason: str, message: PeerMessage) -> bool: ...
        def _become_follower(self, term: int, leader_id: str | None) -> None: ...
        def _become_candidate(self, *, transfer: bool = False) -> None: ...
        def _become_leader(self) -> None: ...

    def _start_campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        """Ask every other voter for a (pre-)vote, and count this node's own."""
        self._leader_id = None
        # Pre-vote requests this node sent when its connection to the leader ended stand
        # in for this round's: the voters hold them until their own evidence, or until
        # their own connection to the leader ends.
        early = self._early_ask() if pre_vote else None
        self._campaign.start(self.node_id, pre_vote=pre_vote, transfer=transfer)
        self._reset_election_deadline()
        voters = self._other_voters()
        # Never give a round up while its answers can still be on their way.
        expected = self.round_trips.campaign_round(voters, self._now, vote=not pre_vote)
        if expected is not None:
            self._election_deadline = max(self._election_deadline, self._now + expected)
        if early is None:
            for peer in sorted(voters):
                self._request_votes_from(peer)
        else:
            for voter, granted in early.answers.items():
                self._record_vote(voter, granted)
            if self._campaign.result(self._voters()) is not VoteResult.WON:
                for peer in sorted(voters - early.answers.keys()):
                    # Asked again in case a held request expired; the answer to either
                    # is not timed, as it may have waited for the voter's evidence.
                    self._request_votes_from(peer, timed=peer not in early.asked)
        self._tally()

    def _request_votes_from(self, peer: str, *, timed: bool = True) -> None:
        # A vote request promises nothing, so it may leave while the term and the
        # candidate's own vote are saved: the voters' saves then overlap this one.
        if timed:
            self.round_trips.vote_asked(peer, self._now)
        else:
            self.round_trips.vote_untimed(peer)
        request = self._with_configuration(self._campaign.request(self._term, self.node_id))
        self._batch.send(peer, request, early=True)

    def _on_vote_request(self, request: RequestVote) -> None:
        candidate = request.candidate_id
        grant = not self._configuration_refuses(request) and grants_vote(
            request,
            term=self._term,
            voted_for=self._voted_for,
            leader_id=self._leader_id,
            hears_leader=self._hears_leader() and not self._leader_gone_sign(request),
        )
        if (
            grant
            and request.pre_vote
            and self._role is NodeState.FOLLOWER
            and self._leader_down.active(self._now)
        ):
            # Someone is already campaigning for the dead leader's place: leave it its
            # election before competing, or the two would split the vote.
            self._defer_to_candidate()
        promise_left = 0.0
        if grant and not request.pre_vote:
            # A vote the promise forbids can only come early (crash evidence, a restart);
            # the winner then waits out what was left. A hand-over waives the promise
            # made to the leader that handed over, which ended its lease first.
            promise_left = self._promise.left(
                self._now, handed_over_by=request.term - 1 if request.transfer else None
            )
            self._voted_for = candidate
            # Granting a vote counts as hearing from a would-be leader (Raft paper 5.2).
            if self._role is NodeState.PRE_CANDIDATE:
                # Its pre-votes must not now make this node a candidate for the next term,
                # which would cut short the election it just voted in.
                self._become_follower(self._term, None)
            else:
                self._defer_to_candidate()
        logger.debug(
            "%s: %s %svote for %s in term %d",
            self.node_id,
            "granted" if grant else "refused",
            "pre-" if request.pre_vote else "",
            candidate,
            request.term,
        )
        self._send(
            candidate,
            RequestVoteResponse(
                request.term if grant else self._term,
                self.node_id,
                granted=grant,
                pre_vote=request.pre_vote,
                promise_left=promise_left,
            ),
        )

    def _on_vote_response(self, response: RequestVoteResponse) -> None:
        if not vote_response_is_current(
            response, self._term, self._role is NodeState.PRE_CANDIDATE
        ):
            self._drop("stale_vote_response", response)
            return
        self.round_trips.vote_answered(response.voter_id, self._now)
        self._record_vote(response.voter_id, response.granted)
        if response.granted and not response.pre_vote:
            self._wait_out_promise(response.promise_left)
        self._tally()

    def _wait_out_promise(self, voter_promise_left: float) -> None:
        """A voter broke a promise to vote: no exclusive work until it would have ended."""
        self._exclusive_after = max(
            self._exclusive_after,
            self._now + stretched(voter_promise_left, self.config.max_clock_drift),
        )

    def _record_vote(self, voter: str, granted: bool) -> None:
        self._campaign.record(voter, granted)

    def _tally(self) -> None:
        result = self._campaign.result(self._voters())
        if result is VoteResult.WON:
            if self._role is NodeState.PRE_CANDIDATE:
                self._become_candidate()
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            logger.info(
                "%s: lost the %selection for term %d",
                self.node_id,
                "pre-" if self._role is NodeState.PRE_CANDIDATE else "",
                self._term + (self._role is NodeState.PRE_CANDIDATE),
            )
            self._become_follower(self._term, None)

    def _hears_leader(self) -> bool:
        """Whether this node leads, or heard from a leader within the election timeout."""
        return self._role is NodeState.LEADER or (
            self._leader_id is not None
            and self._now - self._leader_contact < self.config.election_timeout
        )

    def _defer_to_candidate(self) -> None:
        """Having granted a candidate its (pre-)vote, wait a full election timeout.

        Only candidates retry after short waits while the leader is known down; a voter
        that competed as soon as one lost answer kept the candidate's round from ending
        in time (a lost segment waits out TCP's retransmission, longer than a round)
        would split the vote.
        """
        self._election_deadline = self._now + random_timeout(self.config, self._rng, False)

    def _in_leader_lease(self) -> bool:
        """Whether this node heard from a live leader within the minimum election timeout."""
        return (
            self.config.check_quorum
            and self._leader_id is not None
            and self._now - self._leader_contact < self.config.election_timeout
        )

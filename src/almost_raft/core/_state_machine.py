"""The election state machine: Raft's leader election, pure and deterministic.

This module contains no networking, no clock and no global randomness. Time arrives as
an argument (``now``, in seconds on any monotonic scale), randomness from the
``random.Random`` the caller passes in, and every effect leaves as an :class:`Output`
batch. The same inputs in the same order give the same outputs, which is what lets the
simulator replay a run from its seed.

Theory of operation
-------------------
Every node starts as a follower with a randomized election deadline. A follower that
reaches its deadline without hearing from a leader first asks its peers whether they
*would* vote for it in the next term (a pre-vote, thesis 9.6); only if a majority says
yes does it raise its term, vote for itself and ask for real votes (Raft paper 5.2). A
candidate with a majority becomes leader and sends heartbeats; a follower that hears a
current leader pushes its deadline back. A leader that has not heard from a majority
for an election timeout steps down (CheckQuorum, thesis 6.2).

Rules
-----
Rule 1 (terms first). Every message goes through :meth:`ElectionCore.receive`, which
applies the term rules before anything looks at the message's kind: a higher term makes
this node a follower of that term, a lower term is answered with the current term (so a
stale sender catches up) or dropped. The exceptions are explained where they are made.

Rule 2 (one vote per term). ``voted_for`` is set at most once per term and cleared only
when the term changes. The batch that sets it carries it as ``hard_state``, and the
caller makes it durable before sending the batch's messages.

Rule 3 (votes by voter). Votes are recorded per voter, first answer wins, and counted
only over the current voters, so a duplicated or forged response cannot count twice.

Rule 4 (a live leader is kept). A node that leads, or heard from a leader within the
election timeout, refuses every pre-vote (thesis 9.6); with CheckQuorum it also ignores
vote requests of a newer term (thesis 4.2.3), keeping the latest of each candidate for a
moment in case the transport then reports the leader's process gone. A leader with
CheckQuorum steps down one election timeout after the last answer that gave it a majority
(thesis 6.2): when the leases its followers took from the heartbeats they answered run
out, one message delay later at most, and so before they can have elected a successor
(clock drift aside).

Rule 5 (a promise is kept or paid for). Accepting a heartbeat, or sending one as leader,
is a promise not to vote for another node for an election timeout (see ``_lease.py``); a
node that starts with a term may have made one just before it stopped. A vote that
breaks the promise early carries what was left of it, and a hand-over waives only what
was promised to the leader that hands over. A leader's lease counts from the send time
of the latest round a majority answered, it ends at once when leadership does (before a
hand-over's TimeoutNow leaves), and a winner's exclusive work waits out its voters'
broken promises. Every batch that changes the lease reports it.

Rule 6 (peer input never raises). A message from an unknown or impossible sender is
dropped with a log line and a counter; it never changes state. A broken invariant inside
the core is a bug and fails loudly with an assertion.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable

from ._batch import BatchBuilder
from ._campaign import Campaign
from ._config import ElectionConfig
from ._configuration import Member
from ._departure import Departure
from ._errors import ConfigError, MembershipChangeError
from ._leader_down import LeaderDown
from ._leader_side import LeaderSide
from ._lease import Lease, LeaseKeeper, Promise, stretched
from ._messages import (
    MAX_ROUND_TRIP_US,
    MAX_TERM,
    HeartBeat,
    HeartBeatResponse,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from ._outputs import CoreMetrics, Output
from ._quorum import VoteResult
from ._reconfiguration import Reconfiguration
from ._round_trip import RoundTrips
from ._state import HardState, NodeState
from ._timers import TimeoutAction, election_timeout_action, random_timeout
from ._validation import admits_peer, check_cluster_size, check_id
from ._vote_rules import (
    grants_vote,
    ignored_during_lease,
    keeps_term,
    stale_term_reply,
    vote_response_is_current,
)

__all__ = ["ElectionCore"]

logger = logging.getLogger("almost_raft.core")

_CAMPAIGNING = (NodeState.PRE_CANDIDATE, NodeState.CANDIDATE)


class ElectionCore(Reconfiguration):
    """One node's leader election, driven by explicit inputs.

    Every public method that takes ``now`` is an input and returns the :class:`Output`
    batch it caused; read its docstring for the order in which to carry it out. ``now``
    must never go backwards between calls.

    Args:
        node_id: this node's id.
        peers: the ids of the other voting members at the start: the starting
            configuration (version 0), used until a leader makes one.
        config: timings and membership limits.
        rng: the only source of randomness (the election timeouts).
        now: the current time, in seconds.
        hard_state: the term, vote and configuration recovered from durable storage, if
            any; a saved configuration is followed instead of ``peers``.
    """

    def __init__(
        self,
        node_id: str,
        peers: Iterable[str],
        config: ElectionConfig,
        rng: random.Random,
        now: float,
        hard_state: HardState | None = None,
    ) -> None:
        self.node_id = check_id("node_id", node_id)
        self.config = config
        self.metrics = CoreMetrics()
        self._rng = rng
        self._now = now
        start_peers: set[str] = set()
        for peer in peers:
            if check_id("peers", peer) != node_id:
                start_peers.add(peer)
        check_cluster_size("peers", start_peers, config)
        state = hard_state or HardState()
        self._term = state.term
        self._voted_for = state.voted_for
        self._role = NodeState.FOLLOWER
        self._leader_id: str | None = None
        self._init_configuration(node_id, start_peers, state)
        self._campaign = Campaign()
        # When this node last had reason to believe a leader was alive: the last heartbeat
        # from it, or, on the leader itself, the last time a majority answered.
        self._leader_contact = -math.inf
        # On a leader: when each peer last answered, and the heartbeat and quorum deadlines.
        self._leader_side = LeaderSide()
        # While the leader is known to be gone: short retries, and held vote requests.
        self._leader_down = LeaderDown()
        # Measured round trips and save time, which space those retries; the runtime
        # reports each save's duration to it (RoundTrips.note_save).
        self.round_trips = RoundTrips(
            max_age=config.election_timeout, stale_after=10 * config.election_timeout_range[1]
        )
        # While this node leaves after handing over: from which term, and until when.
        self._departure = Departure()
        self._election_deadline = now + self._random_timeout()
        # Exclusive leadership (see _lease.py): what this node promised by accepting
        # heartbeats, and on a leader the rounds that earn its lease. A node that starts
        # with a term may have promised just before it stopped.
        self._promise = Promise()
        if state.term > 0:
            self._promise.restarted(now, config.election_timeout)
        self._lease_keeper: LeaseKeeper | None = None
        self._lease: Lease | None = None
        # On a candidate: when its exclusive work could begin, given the promises its
        # voters (itself included) broke early to vote for it.
        self._exclusive_after = -math.inf
        # This input's messages, and what the caller was already told.
        self._batch = BatchBuilder(
            HardState(state.term, state.voted_for, self._persisted_configuration()), self._role
        )

    # ------------------------------------------------------------------ read-only status

    @property
    def term(self) -> int:
        """The current term."""
        return self._term

    @property
    def voted_for(self) -> str | None:
        """Whom this node voted for in the current term, if anyone."""
        return self._voted_for

    @property
    def role(self) -> NodeState:
        """The role this node plays now."""
        return self._role

    @property
    def leader_id(self) -> str | None:
        """The leader of the current term as far as this node knows, or ``None``."""
        return self._leader_id

    @property
    def peers(self) -> frozenset[str]:
        """The other voting members of the configuration in force."""
        return frozenset(self._other_voters())

    @property
    def hard_state(self) -> HardState:
        """The term, vote and (leader-made) configuration as they are now."""
        return HardState(self._term, self._voted_for, self._persisted_configuration())

    @property
    def lease(self) -> Lease | None:
        """This node's latest lease, as the last batch reported it; ``None`` before any.

        See :class:`Lease`: it is exclusive while ``lease.exclusive_at(now)``.
        """
        return self._lease

    @property
    def next_deadline(self) -> float:
        """The time by which :meth:`tick` must be called next."""
        if self._role is NodeState.LEADER:
            return self._leader_side.next_deadline
        if self._role is NodeState.TERMINATING:
            return math.inf
        departure = self._departure
        # Read on every input, so the attribute stands in for the property.
        if departure.term is not None:
            return departure.deadline
        return self._election_deadline

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float) -> Output:
        """Time has advanced to ``now``: fire whichever deadlines have passed."""
        self._now = now
        if self._departure.active:
            # A leaving node never campaigns: its only deadline is the end of its leave.
            if self._departure.due(now):
                self._terminate()
        elif self._role is NodeState.LEADER:
            if now >= self._leader_side.quorum_deadline:
                self._check_quorum()
            if self._role is NodeState.LEADER and now >= self._leader_side.heartbeat_deadline:
                self._broadcast_heartbeat()
        elif self._role is not NodeState.TERMINATING and now >= self._election_deadline:
            self._on_election_timeout()
        return self._finish()

    def receive(self, message: PeerMessage, now: float) -> Output:
        """A peer's message arrived. Applies the term rules, then the role's handler."""
        self._now = now
        if self._accept(message):
            if isinstance(message, RequestVote):
                # Every role answers vote requests the same way.
                self._on_vote_request(message)
            elif self._role is NodeState.LEADER:
                self._step_leader(message)
            elif self._role in _CAMPAIGNING:
                self._step_candidate(message)
            else:
                self._step_follower(message)
        return self._finish()

    def add_peer(self, peer_id: str, now: float) -> Output:
        """Add ``peer_id`` as a member; refused past ``max_nodes``.

        Before any leader made a configuration this changes the starting configuration
        of this node alone (every node must be told, as each is sent the seed's
        ``ControlAddNode`` messages). After that, on the leader it asks for the change
        (as ``add_member`` does, with errors logged instead of raised), and elsewhere it
        is ignored with a log line: only the leader changes members.
        """
        self._now = now
        check_id("peer_id", peer_id)
        if peer_id == self.node_id or peer_id in self.configuration.ids:
            logger.debug("%s: peer %s is already a member", self.node_id, peer_id)
        elif not admits_peer(self._other_members(), self.config):
            logger.warning(
                "%s: refused to add peer %s: the cluster already has max_nodes=%d nodes",
                self.node_id,
                peer_id,
                self.config.max_nodes,
            )
        elif self._edit_starting_configuration(peer_id, add=True):
            logger.info(
                "%s: added peer %s (%d peers)", self.node_id, peer_id, len(self._other_members())
            )
            if self._role in _CAMPAIGNING:
                self._request_votes_from(peer_id)
        else:
            self._change_from_peer_list(peer_id, add=True)
        return self._finish()

    def remove_peer(self, peer_id: str, now: float) -> Output:
        """Remove ``peer_id``; the same rules as :meth:`add_peer`."""
        self._now = now
        if peer_id not in self.configuration.ids or peer_id == self.node_id:
            return self._finish()
        if self._edit_starting_configuration(peer_id, add=False):
            logger.info(
                "%s: removed peer %s (%d peers)",
                self.node_id,
                peer_id,
                len(self._other_members()),
            )
            if self._role in _CAMPAIGNING:
                self._tally()
        else:
            self._change_from_peer_list(peer_id, add=False)
        return self._finish()

    def _change_from_peer_list(self, peer_id: str, *, add: bool) -> None:
        if self._role is not NodeState.LEADER:
            logger.info(
                "%s: ignored %s peer %s: members change only at the leader (%s)",
                self.node_id,
                "adding" if add else "removing",
                peer_id,
                self._leader_id or "none known",
            )
            return
        try:
            if add:
                self._add_member(Member(peer_id))
            else:
                self._remove_member(peer_id)
        except (ConfigError, MembershipChangeError) as exc:
            logger.warning("%s: could not change members: %s", self.node_id, exc)

    def transfer_leadership(self, now: float, to: str | None = None) -> Output:
        """Hand leadership over: tell one peer to campaign now, and stop leading.

        The peer (``to``, or else the one that answered most recently) gets a
        :class:`TimeoutNow` and campaigns at once, skipping the pre-vote, and the other
        nodes vote for it even though they heard from this leader moments ago; a new
        leader is known after about one round trip (thesis 3.10). This node becomes a
        follower at once and stays out of the next election for a full
        ``election_timeout_max`` plus a fresh timeout, so if the message is lost the
        others still elect someone else after their election timeout. Does nothing unless
        this node is leader.
        """
        self._now = now
        if self._role is NodeState.LEADER:
            self._hand_over(to)
        return self._finish()

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

    def step_down(self, now: float) -> Output:
        """Stop leading so that another node takes over; see :meth:`transfer_leadership`."""
        return self.transfer_leadership(now)

    def peer_unreachable(self, peer_id: str, now: float) -> Output:
        """The transport has evidence that ``peer_id``'s process is gone.

        Evidence means the peer's host refused a new connection after the old one broke,
        not a timeout (a slow or partitioned peer is no evidence). If the peer is this
        node's leader, the node forgets it and campaigns after a short delay instead of a
        full election timeout, in a turn shared out among the survivors (see
        :meth:`LeaderDown.begin`). Safety never depends on this: wrong evidence costs at
        most a pre-vote that the others refuse while they still hear the leader.
        """
        self._now = now
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
        return self._finish()

    def _hold_vote_request(self, request: RequestVote) -> None:
        """Keep a vote request refused only because the leader seemed alive (see LeaderDown)."""
        if self._leader_down_spacing() > 0 and request.candidate_id in self._other_voters():
            self._leader_down.hold(request, self._now)

    def _replay_held_vote_requests(self, now: float) -> None:
        for request in self._leader_down.take_fresh(now, self._leader_down_spacing()):
            if self._accept(request):
                self._on_vote_request(request)

    def leave(self, now: float, *, hand_over: bool = True) -> Output:
        """Leave the election for good, handing leadership over first if this node leads.

        A leader (with ``hand_over``) sends a :class:`TimeoutNow` as
        :meth:`transfer_leadership` does, then stays on as a follower that never
        campaigns: it answers heartbeats and vote requests, so the successor's election
        can count on it. It terminates by itself, at a deadline it reports as
        ``next_deadline``: one ``heartbeat_interval`` after it hears of a leader of a
        newer term, or one ``election_timeout`` after the hand-over if none appears. The
        batch in which it terminates reports the role ``TERMINATING``; the caller stops
        then. Any other node, or with ``hand_over=False``, terminates at once.
        """
        self._now = now
        if self._role is NodeState.TERMINATING or self._departure.active:
            return self._finish()
        if hand_over and self._role is NodeState.LEADER and self._other_voters():
            term = self._term
            logger.info("%s: leaving the election", self.node_id)
            self._hand_over(None)
            self._departure.begin(term, now, self.config.election_timeout)
        else:
            self._terminate()
        return self._finish()

    def terminate(self, now: float) -> Output:
        """Leave the election for good at once: no more messages, deadlines or votes."""
        self._now = now
        self._terminate()
        return self._finish()

    def _terminate(self) -> None:
        if self._role is not NodeState.TERMINATING:
            logger.info("%s: terminating at term %d", self.node_id, self._term)
            self._become_terminating()

    # ------------------------------------------------------------------ the term rules

    def _accept(self, message: PeerMessage) -> bool:
        """Apply the term rules; return whether the role handler should see ``message``."""
        sender = message.sender
        if self._role is NodeState.TERMINATING:
            return self._drop("terminating", message)
        if sender == self.node_id:
            return self._drop("from_self", message)
        if not self._is_known_sender(message):
            return self._drop("unknown_sender", message)
        if message.term > self._term:
            if isinstance(message, RequestVote) and ignored_during_lease(
                message, self._term, self._in_leader_lease()
            ):
                # Leader stickiness (thesis 4.2.3), except for a hand-over (thesis 3.10).
                self._hold_vote_request(message)
                return self._drop("vote_request_during_lease", message)
            if keeps_term(message):
                # Pre-votes, asked or granted, are hypothetical: no term changes.
                return True
            leader = message.sender if isinstance(message, HeartBeat) else None
            logger.info(
                "%s: saw term %d from %s (was %d)", self.node_id, message.term, sender, self._term
            )
            self._become_follower(message.term, leader)
            return True
        if message.term < self._term:
            reply = stale_term_reply(message, self._term, self.node_id)
            if reply is not None:
                # The stale sender learns the newer term and catches up.
                self._send(sender, reply)
            return self._drop("stale_term", message)
        return True

    def _on_vote_request(self, request: RequestVote) -> None:
        candidate = request.candidate_id
        grant = not self._configuration_refuses(request) and grants_vote(
            request,
            term=self._term,
            voted_for=self._voted_for,
            leader_id=self._leader_id,
            hears_leader=self._hears_leader(),
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

    # ------------------------------------------------------------------ role handlers

    def _step_follower(self, message: PeerMessage) -> None:
        if isinstance(message, HeartBeat):
            self._on_heartbeat(message)
        elif isinstance(message, TimeoutNow):
            self._on_timeout_now(message)
        # Vote and heartbeat responses are late answers to a role this node left.

    def _step_candidate(self, message: PeerMessage) -> None:
        if isinstance(message, TimeoutNow) and self._role is NodeState.PRE_CANDIDATE:
            # The leader this node gave up on is alive and hands over: campaign for real.
            self._on_timeout_now(message)
        elif isinstance(message, HeartBeat):
            # A leader already exists for this term.
            self._become_follower(self._term, message.leader_id)
            self._on_heartbeat(message)
        elif isinstance(message, RequestVoteResponse):
            self._on_vote_response(message)

    def _step_leader(self, message: PeerMessage) -> None:
        if isinstance(message, HeartBeatResponse):
            self._leader_side.answered(message.follower_id, self._now)
            self.round_trips.heartbeat_answered(message.follower_id, self._now)
            if self._lease_keeper is not None:
                self._lease_keeper.answered(message.follower_id, message.round)
            self._on_configuration_ack(message)
        elif isinstance(message, HeartBeat):
            logger.error(
                "%s: leader of term %d got a heartbeat from %s for the same term; are the "
                "nodes configured with the same members?",
                self.node_id,
                self._term,
                message.leader_id,
            )
            self._drop("conflicting_leader", message)

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

    def _on_heartbeat(self, heartbeat: HeartBeat) -> None:
        if self._leader_id not in (None, heartbeat.leader_id):
            logger.error(
                "%s: term %d has leader %s, but %s also claims it; are the nodes configured "
                "with the same members?",
                self.node_id,
                self._term,
                self._leader_id,
                heartbeat.leader_id,
            )
            self._drop("conflicting_leader", heartbeat)
            return
        self._leader_id = heartbeat.leader_id
        self._leader_contact = self._now
        self.round_trips.heard_from_leader(heartbeat.round_trip_us / 1e6, self._now)
        # The answer is the promise the leader's lease rests on (thesis 6.4).
        self._promise.made(self._term, self._now, self.config.election_timeout)
        # The leader is alive: what was held for the case that it had died is moot.
        self._leader_down.end()
        self._reset_election_deadline()
        self._follow_configuration(heartbeat)

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

    # ------------------------------------------------------------------ timers

    def _on_election_timeout(self) -> None:
        action = election_timeout_action(self._term, self._known_peers(), self.config)
        if not self._may_campaign():
            # A non-voter, or a member whose removal it knows committed: it never campaigns.
            self._become_follower(self._term, None)
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

    def _check_quorum(self) -> None:
        # Thesis 6.2: step down once an election timeout passes without hearing from a
        # majority; see LeaderSide.quorum_deadline_after for why that timing is safe.
        voters = self._voters()
        timeout = self.config.election_timeout
        side = self._leader_side
        deadline = side.quorum_deadline_after(voters, self.node_id, self._now, timeout)
        if deadline > self._now:
            self._leader_contact = self._now
            side.quorum_deadline = deadline
            return
        logger.warning(
            "%s: stepping down as leader of term %d: heard from %d of %d nodes in %.3fs",
            self.node_id,
            self._term,
            side.heard_within(voters, self.node_id, self._now, timeout),
            len(voters),
            timeout,
        )
        self._become_follower(self._term, None)

    def _broadcast_heartbeat(self) -> None:
        keeper = self._lease_keeper
        assert keeper is not None, "a leader keeps its heartbeat rounds"
        timeout = self.config.election_timeout
        round_number = keeper.send_round(self.node_id, self._now, timeout)
        # A leader answers its own round: it votes for nobody else while it leads, and
        # keeps that promise for an election timeout after it stops.
        self._promise.made(self._term, self._now, timeout)
        round_trip_us = self._heartbeat().round_trip_us
        for peer in self._heartbeat_recipients():
            heartbeat = self._heartbeat_to(peer, round_trip_us, round_number)
            self.round_trips.heartbeat_sent(peer, self._now)
            self._batch.send(peer, heartbeat, early=self._may_leave_before_save(heartbeat))
        self._leader_side.heartbeat_deadline = self._now + self.config.heartbeat_interval

    def _heartbeat(self) -> HeartBeat:
        # Followers cannot time a round trip themselves (they ask nothing), so the
        # leader tells them what it measures.
        round_trip = self.round_trips.majority(self._other_voters(), self._now)
        round_trip_us = 0 if round_trip is None else min(round(round_trip * 1e6), MAX_ROUND_TRIP_US)
        return HeartBeat(self._term, self.node_id, round_trip_us)

    def _send_heartbeat(self, peer: str, heartbeat: HeartBeat) -> None:
        self.round_trips.heartbeat_sent(peer, self._now)
        self._send(peer, heartbeat)

    # ------------------------------------------------------------------ transitions

    def _become_follower(self, term: int, leader_id: str | None) -> None:
        assert term >= self._term, f"term would go back from {self._term} to {term}"
        if term != self._term:
            self._term = term
            self._voted_for = None
        self._role = NodeState.FOLLOWER
        self._end_lease()
        self._leader_id = leader_id
        if leader_id is not None:
            self._leader_contact = self._now
            self._leader_down.end()
        self._campaign.clear()
        self._leader_side.clear()
        self._stop_replication()
        self._reset_election_deadline()

    def _become_terminating(self) -> None:
        self._role = NodeState.TERMINATING
        self._end_lease()
        self._leader_id = None
        self._campaign.clear()
        self._leader_side.clear()
        self._stop_replication()
        self._departure = Departure()

    def _become_pre_candidate(self) -> None:
        assert self._role is not NodeState.LEADER, "a leader cannot pre-campaign"
        assert not self._departure.active, "a leaving node cannot campaign"
        self.metrics.pre_votes_started += 1
        logger.info("%s: asking for pre-votes for term %d", self.node_id, self._term + 1)
        self._role = NodeState.PRE_CANDIDATE
        self._start_campaign(pre_vote=True, transfer=False)

    def _become_candidate(self, *, transfer: bool = False) -> None:
        assert self._role is not NodeState.LEADER, "a leader cannot campaign"
        assert not self._departure.active, "a leaving node cannot campaign"
        self.metrics.elections_started += 1
        # Its own vote counts like any other: on the promise it may break, wait.
        self._exclusive_after = self._now + self._promise.left(
            self._now, handed_over_by=self._term if transfer else None
        )
        self._term += 1
        self._voted_for = self.node_id
        logger.info("%s: campaigning for term %d", self.node_id, self._term)
        self._role = NodeState.CANDIDATE
        self._start_campaign(pre_vote=False, transfer=transfer)

    def _start_campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        self._leader_id = None
        self._campaign.start(self.node_id, pre_vote=pre_vote, transfer=transfer)
        self._reset_election_deadline()
        voters = self._other_voters()
        # Never give a round up while its answers can still be on their way.
        expected = self.round_trips.campaign_round(voters, self._now, vote=not pre_vote)
        if expected is not None:
            self._election_deadline = max(self._election_deadline, self._now + expected)
        for peer in sorted(voters):
            self._request_votes_from(peer)
        self._tally()

    def _request_votes_from(self, peer: str) -> None:
        # A vote request promises nothing, so it may leave while the term and the
        # candidate's own vote are saved: the voters' saves then overlap this one.
        self.round_trips.vote_asked(peer, self._now)
        request = self._with_configuration(self._campaign.request(self._term, self.node_id))
        self._batch.send(peer, request, early=True)

    def _become_leader(self) -> None:
        assert self._role is NodeState.CANDIDATE, f"{self._role} cannot become leader"
        assert self._voted_for == self.node_id, "a leader voted for itself"
        self.metrics.elections_won += 1
        logger.info("%s: became leader of term %d", self.node_id, self._term)
        self._role = NodeState.LEADER
        self._leader_id = self.node_id
        self._leader_contact = self._now
        self._leader_down.end()
        self.round_trips.forget_heartbeats()
        # The votes that elected it are the first answers CheckQuorum counts.
        granted = self._campaign.granted()
        self._campaign.clear()
        self._lease_keeper = LeaseKeeper(self._term, self._exclusive_after)
        if self._exclusive_after > self._now:
            logger.info(
                "%s: exclusive work of term %d waits %.3fs for promises given to an earlier leader",
                self.node_id,
                self._term,
                self._exclusive_after - self._now,
            )
        quorum_timeout = self.config.election_timeout if self.config.check_quorum else None
        self._leader_side.start(granted, self._now, quorum_timeout)
        self._start_replication()
        self._broadcast_heartbeat()
        # A cluster of one commits at once.
        self._advance_configuration()

    # ------------------------------------------------------------------ helpers

    def _voters(self) -> set[str]:
        return set(self.configuration.voters)

    def _in_leader_lease(self) -> bool:
        """Whether this node heard from a live leader within the minimum election timeout."""
        return (
            self.config.check_quorum
            and self._leader_id is not None
            and self._now - self._leader_contact < self.config.election_timeout
        )

    def _hears_leader(self) -> bool:
        """Whether this node leads, or heard from a leader within the election timeout."""
        return self._role is NodeState.LEADER or (
            self._leader_id is not None
            and self._now - self._leader_contact < self.config.election_timeout
        )

    def _random_timeout(self) -> float:
        if self._leader_down.active(self._now):
            return random_timeout(self.config, self._rng, True, self._leader_down_spacing())
        return random_timeout(self.config, self._rng, False)

    def _defer_to_candidate(self) -> None:
        """Having granted a candidate its (pre-)vote, wait a full election timeout.

        Only candidates retry after short waits while the leader is known down; a voter
        that competed as soon as one lost answer kept the candidate's round from ending
        in time (a lost segment waits out TCP's retransmission, longer than a round)
        would split the vote.
        """
        self._election_deadline = self._now + random_timeout(self.config, self._rng, False)

    def _leader_down_spacing(self) -> float:
        """The ``leader_down_delay`` in force: fixed, or from the measured round trips."""
        return self.config.leader_down_spacing(
            self.round_trips.election_round(self._other_voters(), self._now)
        )

    def _reset_election_deadline(self) -> None:
        self._election_deadline = self._now + self._random_timeout()

    def _send(self, to: str, message: PeerMessage) -> None:
        self._batch.send(to, message)

    def _drop(self, reason: str, message: PeerMessage) -> bool:
        self.metrics.dropped[reason] += 1
        logger.debug("%s: dropped %r (%s)", self.node_id, message, reason)
        return False

    def _lease_duration(self) -> float:
        return self.config.lease_duration

    def _end_lease(self) -> None:
        """Leadership is over: so is the lease, at once (a hand-over relies on it)."""
        self._lease_keeper = None
        lease = self._lease
        if lease is not None and lease.until > self._now:
            self._lease = Lease(lease.term, lease.start, self._now)

    def _finish(self) -> Output:
        """Collect what changed since the last batch into one :class:`Output`."""
        if self._departure.term is not None:
            self._departure.observe(
                self._leader_id, self._term, self._now, self.config.heartbeat_interval
            )
        keeper = self._lease_keeper
        if keeper is not None and (keeper.stale or keeper.voters is not self.configuration):
            # A new configuration may need a different majority.
            keeper.voters = self.configuration
            lease = keeper.lease(self._voters(), self._lease_duration())
            # A leader has a lease once a majority answered one of its rounds.
            if lease.until > -math.inf:
                self._lease = lease
        output, leader_changed = self._batch.finish(
            self._term,
            self._voted_for,
            self._leader_id,
            self._role,
            self.next_deadline,
            self._persisted_configuration(),
            self._take_committed(),
            lease=self._lease,
        )
        if leader_changed:
            self.metrics.leader_changes += 1
        return output

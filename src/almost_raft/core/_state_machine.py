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
moment in case the transport then reports the leader's process gone. A connection to the
leader that ended is no such report: it lets the first in line ask for pre-votes early,
and changes nothing else. A leader with
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
dropped with a log line and a counter; it never changes state (a sender that a committed
configuration removed is told so, see ``_removal``). A broken invariant inside the core
is a bug and fails loudly with an assertion.

Layout
------
This class is the one front door: the inputs, the term rules, the role handlers and the
role transitions. The parts that read and change its state throughout are its bases, one
job each: ``_votes`` (asking for, answering and counting votes), ``_crash_evidence`` (a
leader's process reported gone, and pre-votes asked when its connection ends),
``_leaving`` (hand-over and leaving), ``_leading`` (a leader's heartbeat rounds,
CheckQuorum and lease), ``_peer_list`` (``add_peer``/``remove_peer``),
``_reconfiguration`` (the replicated configuration) and ``_removal`` (telling a member
removed while it was down that it was).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable

from ._batch import BatchBuilder
from ._campaign import Campaign
from ._config import ElectionConfig
from ._crash_evidence import CrashEvidence
from ._departure import Departure
from ._election_timer import ElectionTimer
from ._leader_down import LeaderDown
from ._leader_side import LeaderSide
from ._leading import Leading
from ._lease import Lease, LeaseKeeper, Promise
from ._leaving import Leaving
from ._messages import (
    HeartBeat,
    HeartBeatResponse,
    MembershipQuery,
    PeerMessage,
    RemovalNotice,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from ._outputs import CoreMetrics, Output
from ._peer_list import PeerList
from ._reconfiguration import Reconfiguration
from ._removal import NoticeLimiter, Removal
from ._round_trip import RoundTrips
from ._state import HardState, NodeState
from ._validation import check_cluster_size, check_id
from ._vote_rules import ignored_during_lease, keeps_term, stale_term_reply
from ._votes import Votes

__all__ = ["ElectionCore"]

logger = logging.getLogger("almost_raft.core")

_CAMPAIGNING = (NodeState.PRE_CANDIDATE, NodeState.CANDIDATE)
# Read on every input; a module global is found faster than an enum's member.
_LEADER = NodeState.LEADER
_TERMINATING = NodeState.TERMINATING


class ElectionCore(
    Reconfiguration, Removal, PeerList, Votes, CrashEvidence, ElectionTimer, Leaving, Leading
):
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
        # Whom this node told of their removal, and when (bounded; see _removal).
        self._notices = NoticeLimiter(config.election_timeout)
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
        self._lease_seconds: float | None = None
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
        return self._other_voters()

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
        role = self._role
        if role is _LEADER:
            # LeaderSide.next_deadline, without the call: this is read on every input.
            side = self._leader_side
            heartbeat, quorum = side.heartbeat_deadline, side.quorum_deadline
            return quorum if quorum < heartbeat else heartbeat
        if role is _TERMINATING:
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
        if (
            type(message) is HeartBeatResponse
            and self._role is _LEADER
            and message.term == self._term
            and message.follower_id in self._configuration.ids
            and message.follower_id != self.node_id
        ):
            # Four answers a round: a member's answer in this leader's term is one the
            # term rules accept and the leader's handler takes, so it goes there at once.
            self._on_answer(message)
        elif self._accept(message):
            if isinstance(message, RequestVote):
                # Every role answers vote requests the same way.
                self._on_vote_request(message)
            elif isinstance(message, RemovalNotice):
                self._on_removal_notice(message)
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
        self._add_from_peer_list(peer_id)
        return self._finish()

    def remove_peer(self, peer_id: str, now: float) -> Output:
        """Remove ``peer_id``; the same rules as :meth:`add_peer`."""
        self._now = now
        self._remove_from_peer_list(peer_id)
        return self._finish()

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

    def step_down(self, now: float) -> Output:
        """Stop leading so that another node takes over; see :meth:`transfer_leadership`."""
        return self.transfer_leadership(now)

    def peer_unreachable(self, peer_id: str, now: float) -> Output:
        """The transport has evidence that ``peer_id``'s process is gone.

        Evidence means the peer's host refused a new connection after the old one broke,
        not a timeout (a slow or partitioned peer is no evidence). If the peer is this
        node's leader, the node forgets it and campaigns after a short delay instead of a
        full election timeout, in a turn shared out among the survivors (see
        :meth:`LeaderDown.begin`); the first in line campaigns in this very input, with
        the answers to the pre-vote requests it sent early (:meth:`peer_disconnected`).
        Safety never depends on this: wrong evidence costs at most a pre-vote that the
        others refuse while they still hear the leader.
        """
        self._now = now
        self._leader_process_gone(peer_id)
        return self._finish()

    def peer_disconnected(self, peer_id: str, now: float) -> Output:
        """A connection to or from ``peer_id`` was ended by the peer's side.

        A sign, not evidence: the peer's process may have died, or restarted, or the
        connection just broke; a redial will tell (:meth:`peer_unreachable`, a round
        trip later). If the peer is this node's leader and this node is the first in line
        to succeed it (see :meth:`LeaderDown.begin`), it sends its pre-vote requests now;
        the voters hold them until they have evidence of their own, or until their own
        connection to the leader ends too (this input, on a voter), and answer then.
        Nothing else changes: the node keeps its term and its leader, and counts the
        answers only once its own evidence arrives. A connection that merely broke costs
        pre-vote requests that no one grants while the leader is heard.
        """
        self._now = now
        self._leader_connection_ended(peer_id)
        return self._finish()

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
        self._leave(hand_over)
        return self._finish()

    def terminate(self, now: float) -> Output:
        """Leave the election for good at once: no more messages, deadlines or votes."""
        self._now = now
        self._terminate()
        return self._finish()

    # ------------------------------------------------------------------ the term rules

    def _accept(self, message: PeerMessage) -> bool:
        """Apply the term rules; return whether the role handler should see ``message``."""
        sender = message.sender
        if self._role is NodeState.TERMINATING:
            return self._drop("terminating", message)
        if sender == self.node_id:
            return self._drop("from_self", message)
        if not self._is_known_sender(message, sender):
            # A member removed while it was down may be asking: tell it (see _removal).
            self._tell_if_removed(message)
            return self._drop("unknown_sender", message)
        if isinstance(message, RemovalNotice | MembershipQuery):
            # Neither says anything of a term: a configuration that committed did so in
            # every term, and a member asks only whether it still is one (no role
            # handler answers a member's question: its leader's heartbeats do).
            return True
        if message.term > self._term:
            if isinstance(message, RequestVote) and ignored_during_lease(
                message,
                self._term,
                self._in_leader_lease() and not self._leader_gone_sign(message),
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

    # ------------------------------------------------------------------ role handlers

    def _step_follower(self, message: PeerMessage) -> None:
        if isinstance(message, HeartBeat):
            self._on_heartbeat(message)
        elif isinstance(message, TimeoutNow):
            self._on_timeout_now(message)
        elif isinstance(message, RequestVoteResponse):
            # Kept if it answers pre-vote requests sent before the leader's crash was
            # certain; otherwise a late answer to a campaign this node gave up.
            self._on_early_answer(message)
        # Heartbeat responses are late answers to a leadership this node gave up.

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
            self._on_answer(message)
        elif isinstance(message, HeartBeat):
            logger.error(
                "%s: leader of term %d got a heartbeat from %s for the same term; are the "
                "nodes configured with the same members?",
                self.node_id,
                self._term,
                message.leader_id,
            )
            self._drop("conflicting_leader", message)

    def _on_answer(self, message: HeartBeatResponse) -> None:
        follower, now = message.follower_id, self._now
        # LeaderSide.answered(), inline: four answers a round.
        self._leader_side.answered_at[follower] = now
        self.round_trips.heartbeat_answered(follower, now)
        if self._lease_keeper is not None:
            self._lease_keeper.answered(follower, message.round)
        self._on_configuration_ack(message)

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

    # ------------------------------------------------------------------ timers

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
        quorum_timeout = self._quorum_window() if self.config.check_quorum else None
        self._leader_side.start(granted, self._now, quorum_timeout)
        self._start_replication()
        self._broadcast_heartbeat()
        # A cluster of one commits at once.
        self._advance_configuration()

    # ------------------------------------------------------------------ helpers

    def _voters(self) -> set[str]:
        return set(self.configuration.voters)

    def _send(self, to: str, message: PeerMessage) -> None:
        self._batch.send(to, message)

    def _drop(self, reason: str, message: PeerMessage) -> bool:
        self.metrics.dropped[reason] += 1
        logger.debug("%s: dropped %r (%s)", self.node_id, message, reason)
        return False

    def _finish(self) -> Output:
        """Collect what changed since the last batch into one :class:`Output`."""
        if self._departure.term is not None:
            self._departure.observe(
                self._leader_id, self._term, self._now, self.config.heartbeat_interval
            )
        keeper = self._lease_keeper
        if keeper is not None and (keeper.stale or keeper.voters is not self._configuration):
            self._refresh_lease()
        # _persisted_configuration() and _take_committed(), inline: once per input.
        config = self._configuration
        committed, self._newly_committed = self._newly_committed, None
        role = self._role
        if role is _LEADER:
            # next_deadline, without the call, as a leader's every answer makes a batch.
            side = self._leader_side
            heartbeat, quorum = side.heartbeat_deadline, side.quorum_deadline
            deadline = quorum if quorum < heartbeat else heartbeat
        else:
            deadline = self.next_deadline
        output, leader_changed = self._batch.finish(
            self._term,
            self._voted_for,
            self._leader_id,
            role,
            deadline,
            config if config.version > 0 else None,
            committed,
            lease=self._lease,
        )
        if leader_changed:
            self.metrics.leader_changes += 1
        return output

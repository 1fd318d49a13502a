"""What a leader of :class:`ElectionCore` does every round: heartbeats, CheckQuorum, lease.

:class:`ElectionCore` inherits this. Each heartbeat round is numbered; the answers a
majority gives to one round earn the leader its lease (see ``_lease``), and the answers
within CheckQuorum's window keep it leading (thesis 6.2; see ``_leader_side`` and
``_quorum_window`` below). Each round's heartbeats are built here too: one value for every
peer that holds the configuration, the configuration for the others.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from ._lease import Lease
from ._messages import MAX_ROUND_TRIP_US, HeartBeat

if TYPE_CHECKING:
    from ._batch import BatchBuilder
    from ._config import ElectionConfig
    from ._configuration import Configuration
    from ._leader_side import LeaderSide
    from ._lease import LeaseKeeper, Promise
    from ._membership import Replication
    from ._messages import PeerMessage
    from ._round_trip import RoundTrips

__all__ = ["Leading"]

logger = logging.getLogger("almost_raft.core")


class Leading:
    """The leader's rounds of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        round_trips: RoundTrips
        _now: float
        _term: int
        _replication: Replication | None
        _configuration: Configuration
        _committed_version: int
        _leader_contact: float
        _leader_side: LeaderSide
        _lease_keeper: LeaseKeeper | None
        _lease: Lease | None
        _promise: Promise
        _batch: BatchBuilder
        _lease_seconds: float | None

        @property
        def configuration(self) -> Configuration: ...
        def _voters(self) -> set[str]: ...
        def _other_voters(self) -> frozenset[str]: ...
        def _send(self, to: str, message: PeerMessage) -> None: ...
        def _become_follower(self, term: int, leader_id: str | None) -> None: ...

    def _quorum_window(self) -> float:
        """How long CheckQuorum lets this leader go without hearing from a majority.

        An election timeout, and with PreVote one majority round trip more, and never more
        than the longest election timeout. A heartbeat or an answer that the network loses
        once is resent by TCP only when the next heartbeat's acknowledgement shows the
        gap, so one loss makes a follower's answers two heartbeat intervals and a round
        trip apart; with an election timeout of three intervals, one loss on each of two
        paths would depose a healthy leader. The round trip is what keeps the window from
        overlapping a successor: under PreVote a successor needs its voters' timeouts to
        pass (each counted from the heartbeat they last answered) and then a pre-vote
        round and a vote round, two round trips, while this leader hears each answer one
        way after the follower heard it.
        """
        config = self.config
        window = config.election_timeout
        if config.pre_vote:
            round_trip = self.round_trips.majority(self._other_voters(), self._now)
            if round_trip is not None:
                window += min(round_trip, config.election_timeout_range[1] - window)
        return window

    def _check_quorum(self) -> None:
        # Thesis 6.2: step down once the window passes without hearing from a majority;
        # see LeaderSide.quorum_deadline_after for why that timing is safe.
        voters = self._voters()
        timeout = self._quorum_window()
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
        round_trip_us = self._round_trip_us()
        # Every peer that holds the configuration gets the same heartbeat, one value, so
        # that the transport encodes it once a round.
        plain: HeartBeat | None = None
        now = self._now
        batch = self._batch
        replication = self._replication
        assert replication is not None, "only a leader sends heartbeats"
        holding = replication.holding
        recipients = self._heartbeat_recipients()
        for peer in recipients:
            if plain is not None and peer in holding:
                # What _heartbeat_to() gives a peer that holds the configuration, and a
                # heartbeat without one may leave before the save (_may_leave_before_save).
                heartbeat, early = plain, True
            else:
                heartbeat = self._heartbeat_to(peer, round_trip_us, round_number, plain)
                if heartbeat.configuration is None:
                    plain = heartbeat
                early = self._may_leave_before_save(heartbeat)
            batch.send(peer, heartbeat, early=early)
        self.round_trips.heartbeats_sent(recipients, now)
        self._leader_side.heartbeat_deadline = now + self.config.heartbeat_interval

    def _round_trip_us(self) -> int:
        # Followers cannot time a round trip themselves (they ask nothing), so the
        # leader tells them what it measures.
        round_trip = self.round_trips.majority(self._other_voters(), self._now)
        return 0 if round_trip is None else min(round(round_trip * 1e6), MAX_ROUND_TRIP_US)

    def _lease_duration(self) -> float:
        duration = self._lease_seconds
        if duration is None:
            # The config is immutable, and the property is three calls deep.
            duration = self._lease_seconds = self.config.lease_duration
        return duration

    def _end_lease(self) -> None:
        """Leadership is over: so is the lease, at once (a hand-over relies on it)."""
        self._lease_keeper = None
        lease = self._lease
        if lease is not None and lease.until > self._now:
            self._lease = Lease(lease.term, lease.start, self._now)

    def _refresh_lease(self) -> None:
        keeper = self._lease_keeper
        if keeper is not None and (keeper.stale or keeper.voters is not self.configuration):
            # A new configuration may need a different majority.
            configuration = keeper.voters = self.configuration
            lease = keeper.lease(configuration.voters, self._lease_duration())
            # A leader has a lease once a majority answered one of its rounds.
            if lease.until > -math.inf:
                self._lease = lease

    def _heartbeat_to(
        self,
        peer: str,
        round_trip_us: int,
        round_number: int = 0,
        plain: HeartBeat | None = None,
    ) -> HeartBeat:
        """The heartbeat for ``peer``; ``plain``, if given, is this round's heartbeat
        without the configuration, which every peer that has saved it gets."""
        replication = self._replication
        assert replication is not None, "only a leader sends heartbeats"
        needs = replication.needs_configuration(peer)
        if plain is not None and not needs:
            return plain
        return HeartBeat(
            self._term,
            self.node_id,
            round_trip_us,
            self._configuration if needs else None,
            self._committed_version,
            round=round_number,
        )

    def _may_leave_before_save(self, heartbeat: HeartBeat) -> bool:
        """Whether ``heartbeat`` may leave while this leader's configuration is saved.

        A heartbeat promises nothing, and the leader counts its own copy of a
        configuration only from answers, which reach the core after the save (thesis
        10.2.1 lets a leader write its log in parallel with its followers). So a new
        leader's first heartbeats, carrying its configuration re-made with the same
        members, do not wait for its save. A change of members does: were the leader to
        crash before its save, a follower could hold a configuration no voter can win
        in (a removed follower never campaigns, and refuses the leader's older one).
        """
        offered = heartbeat.configuration
        replication = self._replication
        return offered is None or (replication is not None and offered.key == replication.first_key)

    def _heartbeat_recipients(self) -> tuple[str, ...]:
        replication = self._replication
        assert replication is not None, "only a leader sends heartbeats"
        return replication.recipients(self._now)

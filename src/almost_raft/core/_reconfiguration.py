"""How the state machine follows, replicates and changes its configuration.

:class:`ElectionCore` inherits this; it holds the configuration rules that touch roles
and messages (see ``_configuration`` for the record and its rules, ``_membership`` for a
leader's bookkeeping). Each method is a hook the state machine calls at one place.

Theory of operation
-------------------
A leader sends its configuration with its heartbeats to every member that has not yet
said it saved it; a follower adopts a newer one at once, and its answer, which leaves
only after the save, names the configuration it holds. The leader counts those answers
over the voters of the configuration itself; once a majority has saved it, it is
committed, and the next change may start. Heartbeats also carry the committed version,
so a member that a committed configuration no longer holds knows it was removed and
leaves. A leader starts its term by making its configuration again, stamped with its
term (the leader gate); a change asked for before that commits waits for it.

A voter is made only of a member that is ready: a non-voter that has saved the current
configuration and answered this leader within the last election timeout. Promoting one
that is down would make it needed for a majority it cannot give, so a promotion asked
for too early (``promote_member``, or the second step of adding a voter) waits, as a
change under way, until the member answers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ._config import ElectionConfig
from ._configuration import (
    Configuration,
    Member,
    bootstrap_configuration,
    check_add,
    check_promote,
    check_remove,
    describe_difference,
)
from ._errors import ConfigError, MembershipChangeError
from ._membership import Replication
from ._messages import (
    HeartBeat,
    HeartBeatResponse,
    PeerMessage,
    RemovalNotice,
    RequestVote,
    check_node_id,
)
from ._state import HardState, NodeState

if TYPE_CHECKING:
    from ._departure import Departure
    from ._leader_side import LeaderSide
    from ._outputs import Output

__all__ = ["Reconfiguration"]

logger = logging.getLogger("almost_raft.core")

# A change waiting behind the leader gate: ("add", Member), ("remove", id), ("promote", id).
_Change = tuple[str, Member | str]
# Differences between starting configurations already logged, so that a candidate retrying
# every election timeout does not repeat the same warning; bounded, it cannot grow.
_MAX_REPORTED = 64


class Reconfiguration:
    """The configuration half of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        _term: int
        _role: NodeState
        _leader_id: str | None
        _now: float
        _leader_side: LeaderSide
        _departure: Departure

        def _send(self, to: str, message: PeerMessage) -> None: ...
        def _finish(self) -> Output: ...
        def _broadcast_heartbeat(self) -> None: ...
        def _become_terminating(self) -> None: ...
        def _hand_over(self, to: str | None) -> None: ...

    def _init_configuration(self, node_id: str, peers: set[str], hard_state: HardState) -> None:
        bootstrap = bootstrap_configuration(node_id, peers)
        saved = hard_state.configuration
        self._configuration = bootstrap if saved is None else saved
        if saved is not None and saved.ids != bootstrap.ids:
            logger.warning(
                "%s: the saved configuration %s differs from the members given at start "
                "(%s); following the saved one, which the cluster agreed on",
                node_id,
                saved.describe(),
                ", ".join(sorted(bootstrap.ids)),
            )
        self._committed_version = 0
        self._committed: Configuration | None = None
        self._newly_committed: Configuration | None = None
        self._replication: Replication | None = None
        self._waiting_change: _Change | None = None
        self._reported_differences: set[tuple[str, frozenset[str]]] = set()
        self._other_voters_of: tuple[Configuration | None, frozenset[str]] = (None, frozenset())

    # ------------------------------------------------------------------ reading

    @property
    def configuration(self) -> Configuration:
        """The newest configuration this node has, committed or not (it is in force)."""
        return self._configuration

    @property
    def committed_configuration(self) -> Configuration | None:
        """The newest configuration this node knows to be committed, if any."""
        return self._committed

    @property
    def change_pending(self) -> bool:
        """Whether a leader's change (or the promotion of a new member) is under way."""
        replication = self._replication
        if replication is None:
            return False
        return (
            self._configuration.version > self._committed_version
            or self._waiting_change is not None
            or bool(replication.promote)
        )

    def _may_campaign(self) -> bool:
        """A voter campaigns; so does a node its newest configuration removes, until
        it knows that configuration committed (thesis 4.2.2): it may still be needed to
        elect a leader that commits it, and its own vote then does not count. A
        non-voter never campaigns."""
        config = self._configuration
        return self.node_id in config.voters or (
            self.node_id not in config.ids and self._committed_version < config.version
        )

    def _known_peers(self) -> int:
        """The peer count ``min_peers`` is judged by.

        ``min_peers`` guards a cluster that is still being assembled: it counts the
        other voters of the starting configuration. Once a leader has made a
        configuration the cluster is assembled, and the configuration alone says who
        may campaign, even after a removal leaves fewer peers than ``min_peers``.
        """
        voters = len(self._configuration.voters - {self.node_id})
        return voters if self._configuration.version == 0 else max(voters, self.config.min_peers)

    def _other_voters(self) -> frozenset[str]:
        # Asked every round, and by every campaign: the same set while the
        # configuration is the same.
        configuration = self._configuration
        of, voters = self._other_voters_of
        if of is not configuration:
            voters = configuration.voters - {self.node_id}
            self._other_voters_of = (configuration, voters)
        return voters

    def _other_members(self) -> frozenset[str]:
        return self._configuration.ids - {self.node_id}

    def _is_known_sender(self, message: PeerMessage, sender: str) -> bool:
        """Whether to hear ``message``: from a member, the leader this node follows
        (which a change may be removing), on a leader a member it removed and still
        tells so, or a node with a newer configuration (a leader's that names both, or
        a candidate's): this node missed the changes that made the sender a member, and
        would otherwise never learn them. A removal notice is heard from a member of the
        configuration it carries, for the same reason. ``sender`` is ``message.sender``.
        """
        if (
            sender in self._configuration.ids
            or sender == self._leader_id
            or (self._replication is not None and self._replication.is_leaving(sender))
        ):
            return True
        if isinstance(message, RemovalNotice):
            return sender in message.configuration.ids
        if isinstance(message, RequestVote):
            # A candidate with a newer configuration than this node's may be a member
            # this node has not heard of yet; Raft's voters ask only that a candidate be
            # up to date. A removed node holds an older one, and stays unheard.
            return message.config_key > self._configuration.key
        offered = message.configuration if isinstance(message, HeartBeat) else None
        return (
            offered is not None
            and self._overrides(offered, message.term)
            and {sender, self.node_id} <= offered.ids
        )

    def _overrides(self, offered: Configuration, leader_term: int) -> bool:
        """Whether the configuration of a leader of ``leader_term`` replaces this node's.

        A newer one always does. An older one does when this node's was made before that
        leader's term: it was then never committed (a committed configuration is on a
        majority that refuses candidates without it, so every later leader has it), and
        the leader's stands, as a Raft follower drops log entries its leader lacks. One
        made in the leader's own term is never undone: an older one from that leader
        is only a heartbeat reordered on the way.
        """
        ours = self._configuration
        return offered.key > ours.key or (offered.key < ours.key and ours.term < leader_term)

    def _persisted_configuration(self) -> Configuration | None:
        # A starting configuration is given again at every start; only a leader's is saved.
        config = self._configuration
        return config if config.version > 0 else None

    # ------------------------------------------------------------------ votes

    def _with_configuration(self, request: RequestVote) -> RequestVote:
        """``request`` naming this node's configuration (elections are rare: a copy is
        cheap)."""
        config = self._configuration
        return dataclasses.replace(
            request,
            config_term=config.term,
            config_version=config.version,
            voters=tuple(sorted(config.voters)) if config.version == 0 else (),
        )

    def _configuration_refuses(self, request: RequestVote) -> bool:
        """Whether the candidate's configuration rules out a vote (Raft paper 5.4.1)."""
        config = self._configuration
        if request.config_key < config.key:
            logger.debug(
                "%s: refused %s: its configuration v%d (term %d) is older than ours %s",
                self.node_id,
                request.candidate_id,
                request.config_version,
                request.config_term,
                config.describe(),
            )
            return True
        if request.config_key == config.key:
            # An empty list names no configuration (a candidate always lists itself):
            # a peer of an earlier release, which the term rules alone then govern.
            if (
                config.version == 0
                and request.voters
                and frozenset(request.voters) != config.voters
            ):
                self._report_difference(request)
                return True
            if request.candidate_id not in config.voters:
                return True
        return False

    def _report_difference(self, request: RequestVote) -> None:
        key = (request.candidate_id, frozenset(request.voters))
        if key in self._reported_differences:
            return
        if len(self._reported_differences) < _MAX_REPORTED:
            self._reported_differences.add(key)
        logger.warning(
            "%s: refused to vote for %s: our starting configurations differ (%s); "
            "give every node the same members",
            self.node_id,
            request.candidate_id,
            describe_difference(self._configuration, request.voters),
        )

    # ------------------------------------------------------------------ followers

    def _follow_configuration(self, heartbeat: HeartBeat) -> None:
        """Adopt the leader's configuration, answer, and leave if it removed this node."""
        offered = heartbeat.configuration
        config = self._configuration
        if offered is not None and self._overrides(offered, heartbeat.term):
            logger.info(
                "%s: configuration %s from leader %s%s",
                self.node_id,
                offered.describe(),
                heartbeat.leader_id,
                "" if offered.key > config.key else f", replacing uncommitted {config.describe()}",
            )
            self._configuration = config = offered
        elif offered is not None and offered.key < config.key:
            # A late heartbeat of this leader (reordered on the way): nothing to adopt.
            logger.debug(
                "%s: leader %s sent configuration %s, older than ours %s",
                self.node_id,
                heartbeat.leader_id,
                offered.describe(),
                config.describe(),
            )
        if 0 < config.version <= heartbeat.committed_version:
            self._committed_version = max(self._committed_version, config.version)
            self._committed = config
        self._send(
            heartbeat.leader_id,
            HeartBeatResponse(
                self._term, self.node_id, config.term, config.version, round=heartbeat.round
            ),
        )
        if self._committed is config and self.node_id not in config.ids:
            logger.info(
                "%s: removed from the cluster by configuration %s; leaving",
                self.node_id,
                config.describe(),
            )
            self._become_terminating()

    # ------------------------------------------------------------------ leaders

    def _start_replication(self) -> None:
        """Begin leading with the configuration this node has.

        The cluster's first leader makes the starting configuration version 1 at once:
        from then on only leaders change members, and nodes stop editing their starting
        lists. Later leaders re-make theirs (the leader gate) when a change is asked for,
        so a failover costs the followers no extra save, and also at once when the
        configuration they hold is not known to be committed: a leader counts only its
        own term's configurations as committed (Raft paper 5.4.2), so without the gate it
        would never learn that a pending change committed. A leader that a pending change
        removes, elected before it learned the commit, would then lead on for ever,
        refused by members that do not count it as one.
        """
        self._replication = Replication(self.node_id, self._configuration)
        config = self._configuration
        if (
            config.version == 0
            or config.version > self._committed_version
            or self.node_id not in config.voters
        ):
            self._restamp()

    def _restamp(self) -> None:
        """The leader gate: make the configuration again in this term, to commit it."""
        replication = self._replication
        assert replication is not None, "only a leader re-makes its configuration"
        config = self._configuration.restamped(self._term)
        replication.propose(config, None)
        replication.first_key = config.key
        self._configuration = config
        logger.info("%s: re-committing configuration %s", self.node_id, config.describe())

    def _stop_replication(self) -> None:
        self._replication = None
        self._waiting_change = None

    def _on_configuration_ack(self, response: HeartBeatResponse) -> None:
        # The caller records when the answer came (LeaderSide.answered_at) first: it is
        # what a waiting promotion needs besides the save.
        replication = self._replication
        assert replication is not None, "only a leader counts answers"
        replication.acknowledge(
            response.follower_id, (response.config_term, response.config_version)
        )
        if (
            self._configuration.version > self._committed_version
            or self._waiting_change is not None
            or (replication.promote and replication.gate_open)
        ):
            # Otherwise there is nothing to commit and no change waits: every answer of
            # a steady leader would ask for nothing.
            self._advance_configuration()

    def _advance_configuration(self) -> None:
        """Commit when a majority saved the configuration; then the next step, if any."""
        replication = self._replication
        if replication is None:
            return
        config = self._configuration
        just_committed = False
        # Only a configuration made in this term is counted (Raft paper 5.4.2): one of an
        # older term commits when this term's re-made copy does.
        if (
            config.term == self._term
            and config.version > self._committed_version
            and replication.is_committed()
        ):
            self._committed_version = config.version
            self._committed = self._newly_committed = config
            replication.committed(self._now, self.config.election_timeout)
            replication.gate_open = True
            just_committed = True
            logger.info("%s: configuration %s committed", self.node_id, config.describe())
            if self.node_id not in config.voters:
                self._hand_over_and_leave()
                return
        if config.version > self._committed_version or not replication.gate_open:
            return
        waiting, self._waiting_change = self._waiting_change, None
        if waiting is not None:
            self._apply_change(waiting)
            return
        if not replication.promote:
            return
        promote = replication.ready_to_promote(self._leader_side.answered_at, self._heard_since())
        if promote is not None:
            replication.promote.discard(promote)
            self._apply_change(("promote", promote))
        elif just_committed:
            # Said once, when the configuration that made them members commits; answers
            # come every heartbeat, and each would say the same again.
            for node_id in sorted(replication.promote):
                self._log_promotion_wait(node_id)

    def _heard_since(self) -> float:
        """A non-voter is promoted only if it answered after this time (an election
        timeout ago): a member silent for longer may be down, and as a voter it would
        be needed for a majority it cannot give."""
        return self._now - self.config.election_timeout

    def _log_promotion_wait(self, node_id: str) -> None:
        replication = self._replication
        assert replication is not None, "only a leader promotes"
        answered_at = self._leader_side.answered_at
        wait = replication.promotion_wait(node_id, answered_at, self._heard_since(), self._now)
        logger.info("%s: %s", self.node_id, wait)

    def _hand_over_and_leave(self) -> None:
        """This leader's removal committed: tell the others, hand over, leave (thesis 4.2.2).

        It leaves as :meth:`ElectionCore.leave` does, staying a moment as a follower that
        never campaigns, so that its peers do not take its closed connections for a
        crash and campaign against the successor.
        """
        self._broadcast_heartbeat()
        logger.info("%s: removed from the cluster; leaving", self.node_id)
        term = self._term
        self._hand_over(None)
        self._departure.begin(term, self._now, self.config.election_timeout)

    # ------------------------------------------------------------------ changes

    def add_member(self, member: Member, now: float) -> Output:
        """Add ``member``; a voter joins as a non-voter first and is promoted once it
        has saved the configuration, so a member that is not up never costs a majority.

        Adding a member already present with the same address is a no-op.

        Raises:
            ConfigError: the member cannot be added (address taken, ``max_nodes``);
                nothing changed.
            MembershipChangeError: this node does not lead, or a change is pending.
        """
        self._now = now
        self._add_member(member)
        return self._finish()

    def _add_member(self, member: Member) -> None:
        if not isinstance(member, Member):
            raise ConfigError("member", member, "must be an almost_raft.Member")
        if check_add(self._configuration, member):
            self._check_can_change()
            limit = self.config.max_nodes
            if limit is not None and len(self._configuration.members) + 1 > limit:
                raise ConfigError(
                    "node_id",
                    member.node_id,
                    f"cannot be added: the cluster already has max_nodes={limit} members",
                )
            self._request(("add", member))

    def remove_member(self, node_id: str, now: float) -> Output:
        """Remove ``node_id``; removing this leader commits, then hands over and leaves.

        Raises:
            ConfigError: ``node_id`` is not a member, or is the last voter.
            MembershipChangeError: this node does not lead, or a change is pending.
        """
        self._now = now
        self._remove_member(node_id)
        return self._finish()

    def _remove_member(self, node_id: str) -> None:
        check_remove(self._configuration, node_id)
        replication = self._replication
        self._check_can_change(allow_promotion_of=node_id)
        if replication is not None:
            replication.promote.discard(node_id)
        self._request(("remove", node_id))

    def promote_member(self, node_id: str, now: float) -> Output:
        """Make the non-voter ``node_id`` a voter, once it is ready; a voter already is
        (a no-op).

        A non-voter that is ready (see the module docstring) is promoted in this batch;
        any other waits, logged at info with what it waits for, as a member added as a
        voter does. A wait does not expire; until it ends no other change can be made
        but removing ``node_id``, which cancels it, and asking again changes nothing.
        It ends with this leadership: a new leader does not carry it on. A promotion
        asked for before the leader gate opens is judged when it is made.

        Raises:
            ConfigError: ``node_id`` is not a member.
            MembershipChangeError: this node does not lead, or another change is
                pending (another member's promotion among them).
        """
        self._now = now
        if check_promote(self._configuration, node_id):
            self._check_can_change(allow_promotion_of=node_id)
            self._request(("promote", node_id))
        return self._finish()

    def _check_can_change(self, allow_promotion_of: str | None = None) -> None:
        replication = self._replication
        if self._role is not NodeState.LEADER or replication is None:
            where = f"the leader is {self._leader_id}" if self._leader_id else "no leader is known"
            raise MembershipChangeError(
                f"{self.node_id} is not the leader ({where}); change members at the leader",
                self._leader_id,
            )
        if not replication.gate_open:
            pending = self._waiting_change is not None
        else:
            pending = self._configuration.version > self._committed_version
            promotions = sorted(replication.promote - {allow_promotion_of})
            if promotions and not pending:
                waiting = promotions[0]
                raise MembershipChangeError(
                    f"{self.node_id}: the promotion of {waiting} is pending: it waits until "
                    f"{waiting} has saved the configuration and answers; retry once it is "
                    f"a voter, or remove {waiting} to cancel it",
                    self.node_id,
                )
            pending = pending or bool(promotions)
        if pending:
            raise MembershipChangeError(
                f"{self.node_id}: another change is pending (configuration "
                f"{self._configuration.describe()}); retry once it is committed",
                self.node_id,
            )

    def _request(self, change: _Change) -> None:
        replication = self._replication
        assert replication is not None, "only a leader changes the configuration"
        if not replication.gate_open:
            # Behind the leader gate: made once this term's configuration commits.
            if replication.first_key is None:
                self._restamp()
                self._broadcast_heartbeat()
            logger.info(
                "%s: the change waits until configuration v%d of this term commits",
                self.node_id,
                self._configuration.version,
            )
            self._waiting_change = change
            # A cluster of one commits at once.
            self._advance_configuration()
            return
        self._apply_change(change)

    def _apply_change(self, change: _Change) -> None:
        replication = self._replication
        assert replication is not None, "only a leader changes the configuration"
        kind, subject = change
        config = self._configuration
        removed = None
        if kind == "add":
            assert isinstance(subject, Member)
            if config.member(subject.node_id) is not None:
                return
            joining = Member(subject.node_id, False, subject.address)
            new = config.with_member(joining, self._term)
            if subject.voter:
                replication.promote.add(subject.node_id)
        elif kind == "remove":
            assert isinstance(subject, str)
            if config.member(subject) is None:
                return
            new = config.without(subject, self._term)
            removed = subject
        else:
            assert isinstance(subject, str)
            member = config.member(subject)
            if member is None or member.voter:
                return
            if not replication.is_ready(
                subject, self._leader_side.answered_at, self._heard_since()
            ):
                replication.promote.add(subject)
                self._log_promotion_wait(subject)
                return
            replication.promote.discard(subject)
            new = config.with_member(Member(subject, True, member.address), self._term)
        replication.propose(new, removed)
        self._configuration = new
        logger.info("%s: proposing configuration %s", self.node_id, new.describe())
        # The followers need not wait for the next heartbeat to hear of it.
        self._broadcast_heartbeat()
        self._advance_configuration()

    # ------------------------------------------------------------------ starting configuration

    def _edit_starting_configuration(self, peer_id: str, add: bool) -> bool:
        """Change the starting configuration, before any leader made one; True if done.

        The starting members come from the peers given at start and the ones added or
        removed before a leader made a configuration (the seed's ``ControlAddNode``);
        after that only a leader changes members.
        """
        check_node_id("peer_id", peer_id)
        config = self._configuration
        if config.version > 0:
            return False
        members = set(config.ids)
        if add:
            members.add(peer_id)
        else:
            members.discard(peer_id)
        members.add(self.node_id)
        self._configuration = bootstrap_configuration(self.node_id, members - {self.node_id})
        return True

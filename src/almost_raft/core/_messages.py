"""Peer messages: what nodes say to each other.

Every message is an immutable value, checked when it is built; building one with a field
of the wrong type or range raises ``TypeError``/``ValueError``. Each carries its sender,
so a transport needs only to move it.

As in the Rust crate, each message class is also reachable as an attribute of
:class:`Message` (``Message.HeartBeat(...)``). The seed's control messages live with the
seed API (``almost_raft.seed``), which attaches them to :class:`Message` the same way.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import TYPE_CHECKING, Any, ClassVar

from ._configuration import MAX_ID_LENGTH as MAX_ID_LENGTH
from ._configuration import Configuration

__all__ = [
    "HeartBeat",
    "HeartBeatResponse",
    "MembershipQuery",
    "Message",
    "PeerMessage",
    "RemovalNotice",
    "RequestVote",
    "RequestVoteResponse",
    "TimeoutNow",
]

MAX_TERM = 2**63 - 1
# A heartbeat's round-trip figure: an hour, far beyond any election timeout, fits.
MAX_ROUND_TRIP_US = 3_600_000_000


class Message:
    """Base class of everything that goes through the election's queues."""

    __slots__ = ()

    RequestVote: ClassVar[type[RequestVote]]
    RequestVoteResponse: ClassVar[type[RequestVoteResponse]]
    HeartBeat: ClassVar[type[HeartBeat]]
    HeartBeatResponse: ClassVar[type[HeartBeatResponse]]
    TimeoutNow: ClassVar[type[TimeoutNow]]
    RemovalNotice: ClassVar[type[RemovalNotice]]
    MembershipQuery: ClassVar[type[MembershipQuery]]
    # The seed API's control messages, attached by almost_raft.seed (the core cannot
    # import a layer above it, so their precise types are not known here).
    ControlAddNode: ClassVar[type[Any]]
    ControlRemoveNode: ClassVar[type[Any]]
    ControlLeaderChanged: ClassVar[type[Any]]


class PeerMessage(Message):
    """A message one node sends to another. Every one carries the sender's term."""

    __slots__ = ()

    term: int

    @property
    def sender(self) -> str:
        """The id of the node that sent this message."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, slots=True)
class RequestVote(PeerMessage):
    """A candidate asks for a vote in ``term``.

    With ``pre_vote`` set it only asks whether the receiver *would* vote for it in
    ``term``; nobody changes term or records a vote for a pre-vote (thesis 9.6).

    With ``transfer`` set the candidate campaigns because the leader handed leadership to
    it (:class:`TimeoutNow`), so voters answer even though they heard from that leader
    moments ago (thesis 3.10).

    ``config_term`` and ``config_version`` name the candidate's configuration; a voter
    whose own is newer refuses, as Raft's voters refuse a candidate with an older log.
    At version 0 (a starting configuration) ``voters`` lists the candidate's voters, and
    a voter whose starting voters differ refuses; an empty ``voters`` states none (as
    from an earlier release).
    """

    term: int
    candidate_id: str
    pre_vote: bool = False
    transfer: bool = False
    config_term: int = 0
    config_version: int = 0
    voters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_term(self.term)
        check_node_id("candidate_id", self.candidate_id)
        check_flag("pre_vote", self.pre_vote)
        check_flag("transfer", self.transfer)
        if self.pre_vote and self.transfer:
            raise ValueError("a handed-over election skips the pre-vote")
        check_term(self.config_term)
        check_term(self.config_version)
        check_ids("voters", self.voters)

    @property
    def config_key(self) -> tuple[int, int]:
        """``(config_term, config_version)``, ordered as :attr:`Configuration.key`."""
        return (self.config_term, self.config_version)

    @property
    def sender(self) -> str:
        return self.candidate_id


@dataclasses.dataclass(frozen=True, slots=True)
class RequestVoteResponse(PeerMessage):
    """A voter's answer to a (pre-)vote request.

    ``voter_id`` says who answered, so a duplicated response counts once. A granted
    response carries the term that was asked for; a refusal carries the voter's own term,
    which tells a candidate that fell behind to catch up.

    ``promise_left`` is how many seconds (on the voter's clock) were left of the voter's
    promise not to vote, given to an earlier leader, when it voted anyway: on evidence
    that the leader died, or soon after a restart. The winner waits that long (stretched
    by the drift bound) before it starts exclusive work.
    """

    term: int
    voter_id: str
    granted: bool
    pre_vote: bool = False
    promise_left: float = 0.0

    def __post_init__(self) -> None:
        check_term(self.term)
        check_node_id("voter_id", self.voter_id)
        check_flag("granted", self.granted)
        check_flag("pre_vote", self.pre_vote)
        check_seconds("promise_left", self.promise_left)

    @property
    def sender(self) -> str:
        return self.voter_id


@dataclasses.dataclass(frozen=True, slots=True)
class HeartBeat(PeerMessage):
    """The leader of ``term`` says it is alive.

    ``round_trip_us`` is the leader's estimate, in microseconds, of how long a request
    takes to be answered by a majority (0: not known yet). Followers answer nothing that
    could time a round trip, so they space their failover turns by this figure.

    ``configuration`` is the leader's configuration, sent to a follower until it has
    acknowledged it (``None`` otherwise); ``committed_version`` is the newest version the
    leader knows to be committed, which tells a removed member that it may leave.

    ``round`` numbers the leader's heartbeat rounds; the answer echoes it, so the leader
    knows when the round it answers was sent, which is what its lease counts from.
    """

    term: int
    leader_id: str
    round_trip_us: int = 0
    configuration: Configuration | None = None
    committed_version: int = 0
    round: int = 0

    def __post_init__(self) -> None:
        # A leader builds one a round and every follower decodes one: the checks of a
        # valid heartbeat are made here, and the named checks only raise the errors.
        term, leader_id, round_trip_us = self.term, self.leader_id, self.round_trip_us
        committed, round_number = self.committed_version, self.round
        if type(term) is not int or not 0 <= term <= MAX_TERM:
            check_term(term)
        if type(leader_id) is not str or not 0 < len(leader_id) <= MAX_ID_LENGTH:
            check_node_id("leader_id", leader_id)
        if (
            isinstance(round_trip_us, bool)
            or not isinstance(round_trip_us, int)
            or not 0 <= round_trip_us <= MAX_ROUND_TRIP_US
        ):
            raise ValueError(
                f"round_trip_us must be an int in [0, {MAX_ROUND_TRIP_US}], got {round_trip_us!r}"
            )
        if self.configuration is not None and not isinstance(self.configuration, Configuration):
            raise TypeError("configuration must be a Configuration or None")
        if type(committed) is not int or not 0 <= committed <= MAX_TERM:
            check_term(committed)
        if type(round_number) is not int or not 0 <= round_number <= MAX_TERM:
            check_count("round", round_number)

    if TYPE_CHECKING:

        @property
        def sender(self) -> str: ...

    else:
        # Read a few times per message of every round: a property whose getter is
        # operator.attrgetter runs no Python frame.
        sender = property(operator.attrgetter("leader_id"), doc="The id of the node that sent it.")


@dataclasses.dataclass(frozen=True, slots=True)
class HeartBeatResponse(PeerMessage):
    """A node answers a heartbeat, so the leader knows a majority still hears it.

    An answer to a heartbeat of an older term carries the newer term, which makes a
    deposed leader step down as soon as it can talk to the cluster again. It names the
    follower's configuration (``config_term``, ``config_version``), saved before the
    answer left: that is how a leader counts a configuration as committed. ``round``
    echoes the round of the heartbeat it answers.
    """

    term: int
    follower_id: str
    config_term: int = 0
    config_version: int = 0
    round: int = 0

    def __post_init__(self) -> None:
        # Four answers every heartbeat round: as HeartBeat, the named checks only raise.
        term, follower_id, round_number = self.term, self.follower_id, self.round
        config_term, config_version = self.config_term, self.config_version
        if type(term) is not int or not 0 <= term <= MAX_TERM:
            check_term(term)
        if type(follower_id) is not str or not 0 < len(follower_id) <= MAX_ID_LENGTH:
            check_node_id("follower_id", follower_id)
        if type(config_term) is not int or not 0 <= config_term <= MAX_TERM:
            check_term(config_term)
        if type(config_version) is not int or not 0 <= config_version <= MAX_TERM:
            check_term(config_version)
        if type(round_number) is not int or not 0 <= round_number <= MAX_TERM:
            check_count("round", round_number)

    @property
    def config_key(self) -> tuple[int, int]:
        """``(config_term, config_version)``, ordered as :attr:`Configuration.key`."""
        return (self.config_term, self.config_version)

    if TYPE_CHECKING:

        @property
        def sender(self) -> str: ...

    else:
        # Read a few times per message of every round: a property whose getter is
        # operator.attrgetter runs no Python frame.
        sender = property(
            operator.attrgetter("follower_id"), doc="The id of the node that sent it."
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TimeoutNow(PeerMessage):
    """The leader of ``term`` hands leadership over: campaign now, without waiting.

    Sent when a leader shuts down cleanly or steps down, so the cluster has a new leader
    after about one round trip instead of an election timeout (thesis 3.10).
    """

    term: int
    leader_id: str

    def __post_init__(self) -> None:
        check_term(self.term)
        check_node_id("leader_id", self.leader_id)

    @property
    def sender(self) -> str:
        return self.leader_id


@dataclasses.dataclass(frozen=True, slots=True)
class RemovalNotice(PeerMessage):
    """A member tells a node that a committed configuration no longer holds it.

    The answer to a message from a node that neither the member's configuration nor the
    newest one it knows committed holds, and whose own configuration is no newer: a
    member removed while it was down, which no leader tells any more (as etcd's members
    answer a removed peer with 410 Gone). ``configuration`` is that committed
    configuration; the receiver leaves if it is at least as new as its own and does not
    hold it. ``term`` is the sender's term, and changes no one's: that a configuration
    committed is true in every term. A notice is never answered.
    """

    term: int
    member_id: str
    configuration: Configuration

    def __post_init__(self) -> None:
        check_term(self.term)
        check_node_id("member_id", self.member_id)
        if not isinstance(self.configuration, Configuration):
            raise TypeError("configuration must be a Configuration")
        if self.configuration.version == 0:
            raise ValueError("a starting configuration (version 0) is never committed")

    @property
    def sender(self) -> str:
        return self.member_id


@dataclasses.dataclass(frozen=True, slots=True)
class MembershipQuery(PeerMessage):
    """A non-voter that heard no leader for an election timeout asks whether it still
    is a member, naming its configuration (``config_term``, ``config_version``).

    A voter asks the same with its pre-votes; a non-voter never campaigns, so it would
    otherwise send nothing a member could answer. A member that holds it answers
    nothing (its leader's heartbeats will reach it); one that knows a committed
    configuration without it answers with a :class:`RemovalNotice`. Like the notice, it
    changes no one's term.
    """

    term: int
    node_id: str
    config_term: int
    config_version: int

    def __post_init__(self) -> None:
        check_term(self.term)
        check_node_id("node_id", self.node_id)
        check_term(self.config_term)
        check_term(self.config_version)

    @property
    def config_key(self) -> tuple[int, int]:
        """``(config_term, config_version)``, ordered as :attr:`Configuration.key`."""
        return (self.config_term, self.config_version)

    @property
    def sender(self) -> str:
        return self.node_id


def check_term(term: object) -> None:
    """Raise unless ``term`` is a valid term number."""
    if isinstance(term, bool) or not isinstance(term, int):
        raise TypeError(f"term must be an int, got {type(term).__name__}")
    if not 0 <= term <= MAX_TERM:
        raise ValueError(f"term must be in [0, 2**63), got {term}")


def check_node_id(field: str, node_id: object) -> None:
    """Raise unless ``node_id`` is a valid node id."""
    if not isinstance(node_id, str):
        raise TypeError(f"{field} must be a str, got {type(node_id).__name__}")
    if not 0 < len(node_id) <= MAX_ID_LENGTH:
        raise ValueError(f"{field} must have 1 to {MAX_ID_LENGTH} characters")


def check_count(field: str, value: object) -> None:
    """Raise unless ``value`` is an int in ``[0, 2**63)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TERM:
        raise ValueError(f"{field} must be in [0, 2**63), got {value}")


def check_seconds(field: str, value: object) -> None:
    """Raise unless ``value`` is a float of finite, non-negative seconds."""
    if not isinstance(value, float):
        raise TypeError(f"{field} must be a float, got {type(value).__name__}")
    if not 0 <= value < 1e9:
        raise ValueError(f"{field} must be finite seconds from 0, got {value}")


def check_ids(field: str, ids: object) -> None:
    """Raise unless ``ids`` is a tuple of valid node ids."""
    if not isinstance(ids, tuple):
        raise TypeError(f"{field} must be a tuple, got {type(ids).__name__}")
    for node_id in ids:
        check_node_id(field, node_id)


def check_flag(field: str, value: object) -> None:
    """Raise unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{field} must be a bool, got {type(value).__name__}")


Message.RequestVote = RequestVote
Message.RequestVoteResponse = RequestVoteResponse
Message.HeartBeat = HeartBeat
Message.HeartBeatResponse = HeartBeatResponse
Message.TimeoutNow = TimeoutNow
Message.RemovalNotice = RemovalNotice
Message.MembershipQuery = MembershipQuery

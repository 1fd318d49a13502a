"""The configuration: who votes, as one versioned record with one writer, the leader.

A configuration is in effect a Raft log that holds one entry, the latest. Its
``version`` is the entry's index and its ``term`` the term of the leader that made it, so
``(term, version)`` orders configurations the way Raft's up-to-date check orders logs
(Raft paper 5.4.1): a voter refuses a candidate whose configuration is older than its own.

Rules (thesis 4.1-4.3, and the single-server change bug, Ongaro 2015):

Rule 1 (one writer). Only a leader makes a new configuration, and only one version
beyond the one it knows to be committed: one change at a time. A change adds one
member, removes one, or promotes a non-voter to voter.

Rule 2 (the newest is in force). Every node uses the newest configuration it has, the
moment it has it, committed or not; a follower saves it before it acknowledges it.

Rule 3 (commit by the new majority). A configuration is committed when a majority of its
own voters has saved it.

Rule 4 (leader gate). A new leader first commits its configuration again, stamped with
its own term, before it makes any change: a configuration made by an older leader and
never committed could otherwise lose to one made after it and elect in a disjoint majority.

Rule 5 (bootstrap). Version 0 is a node's starting configuration, from its peer list or
cluster file. It is never saved; two nodes at version 0 vote for each other only when
their voters are the same. Version 1 and later are made only by leaders.

This module holds the record and its pure rules; the state machine applies them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from ._errors import ConfigError

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_CONFIGURATION_BYTES",
    "MAX_MEMBERS",
    "Configuration",
    "Member",
    "bootstrap_configuration",
    "describe_difference",
]

#: The longest node id, in characters (messages check ids against it too).
MAX_ID_LENGTH = 256
#: The most members one configuration may hold. A configuration must also fit in
#: MAX_CONFIGURATION_BYTES (see there), which for ids and addresses of typical length
#: allows about 30 members.
MAX_MEMBERS = 64
#: The most bytes a configuration's member list may take as JSON (ASCII, ``[id, voter,
#: address]`` per member). The state file keeps the whole record in one 4096-byte slot
#: next to the term, the vote and the node's ids, so the list gets half of the slot.
MAX_CONFIGURATION_BYTES = 2048
#: The longest opaque address a member may carry.
MAX_ADDRESS_LENGTH = 255


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One member of a configuration.

    Attributes:
        node_id: the member's id.
        voter: whether it votes and counts towards majorities. A non-voter hears the
            leader's heartbeats and follows its configuration, but never campaigns.
        address: how to reach it, for transports that need one (``host:port`` for TCP);
            opaque to the election.
    """

    node_id: str
    voter: bool = True
    address: str | None = None

    def __post_init__(self) -> None:
        _check_id("node_id", self.node_id)
        if not isinstance(self.voter, bool):
            raise ConfigError("voter", self.voter, "must be True or False")
        address = self.address
        if address is not None and (
            not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_LENGTH
        ):
            raise ConfigError(
                "address",
                address,
                f"must be None or a str of 1 to {MAX_ADDRESS_LENGTH} characters",
            )


@dataclasses.dataclass(frozen=True, slots=True)
class Configuration:
    """Who takes part in the election, at one version.

    Attributes:
        version: 0 for a node's starting configuration, then one more per change.
        term: the term of the leader that made it (0 for version 0).
        members: every member, sorted by id, each id once.
    """

    version: int
    term: int
    members: tuple[Member, ...]
    # Derived from the members once: the core asks for them on every message.
    _voters: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _ids: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _key: tuple[int, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for field, value in (("version", self.version), ("term", self.term)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{field} must be an int, got {type(value).__name__}")
            if not 0 <= value < 2**63:
                raise ValueError(f"{field} must be in [0, 2**63), got {value}")
        if not isinstance(self.members, tuple) or not all(
            isinstance(member, Member) for member in self.members
        ):
            raise TypeError("members must be a tuple of Member")
        ids = [member.node_id for member in self.members]
        if ids != sorted(set(ids)):
            raise ValueError("members must be sorted by id, each id once")
        if len(ids) > MAX_MEMBERS:
            raise ValueError(f"a configuration holds at most {MAX_MEMBERS} members")
        size = members_bytes(self.members)
        if size > MAX_CONFIGURATION_BYTES:
            raise ValueError(
                f"a configuration's members take {size} bytes, more than the "
                f"{MAX_CONFIGURATION_BYTES} a state file holds"
            )
        object.__setattr__(self, "_ids", frozenset(ids))
        object.__setattr__(self, "_key", (self.term, self.version))
        object.__setattr__(
            self, "_voters", frozenset(member.node_id for member in self.members if member.voter)
        )

    @property
    def key(self) -> tuple[int, int]:
        """``(term, version)``: a larger key is a newer configuration."""
        return self._key

    @property
    def voters(self) -> frozenset[str]:
        """The ids of the members that vote."""
        return self._voters

    @property
    def ids(self) -> frozenset[str]:
        """The ids of every member, voter or not."""
        return self._ids

    def member(self, node_id: str) -> Member | None:
        """The member with ``node_id``, or ``None``."""
        for member in self.members:
            if member.node_id == node_id:
                return member
        return None

    def same_members(self, other: Configuration) -> bool:
        """Whether both hold the same members with the same roles (addresses aside)."""
        return _roles(self) == _roles(other)

    def restamped(self, term: int) -> Configuration:
        """The same members as the next version, made in ``term`` (the leader gate)."""
        return Configuration(self.version + 1, term, self.members)

    def with_member(self, member: Member, term: int) -> Configuration:
        """The next version, made in ``term``, with ``member`` added or replaced."""
        kept = [m for m in self.members if m.node_id != member.node_id]
        members = tuple(sorted([*kept, member], key=lambda m: m.node_id))
        return Configuration(self.version + 1, term, members)

    def without(self, node_id: str, term: int) -> Configuration:
        """The next version, made in ``term``, without ``node_id``."""
        members = tuple(m for m in self.members if m.node_id != node_id)
        return Configuration(self.version + 1, term, members)

    def describe(self) -> str:
        """A short text for logs: ``v3 (term 2): a, b, c (non-voter)``."""
        names = ", ".join(
            member.node_id + ("" if member.voter else " (non-voter)") for member in self.members
        )
        return f"v{self.version} (term {self.term}): {names or 'no members'}"


def members_bytes(members: Iterable[Member]) -> int:
    """How many bytes ``members`` take in the state file (see MAX_CONFIGURATION_BYTES)."""
    return len(
        json.dumps([[m.node_id, m.voter, m.address] for m in members], separators=(", ", ": "))
    )


def bootstrap_configuration(
    node_id: str, peers: Iterable[str], addresses: dict[str, str] | None = None
) -> Configuration:
    """Version 0: ``node_id`` and ``peers``, every one a voter.

    Raises:
        ConfigError: there are more members than a configuration holds.
    """
    addresses = addresses or {}
    ids = sorted({node_id, *peers})
    members = tuple(Member(i, True, addresses.get(i)) for i in ids)
    if len(members) > MAX_MEMBERS or members_bytes(members) > MAX_CONFIGURATION_BYTES:
        raise ConfigError(
            "peers",
            f"{len(ids) - 1} peers",
            f"a configuration holds at most {MAX_MEMBERS} members and "
            f"{MAX_CONFIGURATION_BYTES} bytes of ids and addresses "
            f"({members_bytes(members)} here); use fewer members or shorter ids",
        )
    return Configuration(0, 0, members)


def describe_difference(ours: Configuration, theirs_voters: Iterable[str]) -> str:
    """Name the voters one side has and the other lacks, for a log line."""
    mine = ours.voters
    theirs = frozenset(theirs_voters)
    parts = []
    if mine - theirs:
        parts.append(f"only we have {sorted(mine - theirs)}")
    if theirs - mine:
        parts.append(f"only they have {sorted(theirs - mine)}")
    return "; ".join(parts) or "none"


def check_add(config: Configuration, member: Member) -> bool:
    """Whether adding ``member`` changes anything; raise if it cannot be added.

    Adding a member already present with the same role is a no-op (``False``).

    Raises:
        ConfigError: the address is used by another member, or the configuration is full.
    """
    existing = config.member(member.node_id)
    if existing is not None:
        if member.address is not None and existing.address != member.address:
            raise ConfigError(
                "address",
                member.address,
                f"{member.node_id} is already a member at {existing.address!r}; remove it "
                "first to move it",
            )
        return False
    if member.address is not None:
        for other in config.members:
            if other.address == member.address:
                raise ConfigError(
                    "address",
                    member.address,
                    f"is already the address of member {other.node_id}; give each member "
                    "its own address",
                )
    if len(config.members) >= MAX_MEMBERS:
        raise ConfigError(
            "node_id",
            member.node_id,
            f"cannot be added: a configuration holds at most {MAX_MEMBERS} members",
        )
    size = members_bytes((*config.members, member))
    if size > MAX_CONFIGURATION_BYTES:
        raise ConfigError(
            "node_id",
            member.node_id,
            f"cannot be added: the members would take {size} bytes of ids and addresses, "
            f"more than the {MAX_CONFIGURATION_BYTES} a state file holds; use shorter ids "
            "or addresses",
        )
    return True


def check_remove(config: Configuration, node_id: str) -> None:
    """Raise unless ``node_id`` can be removed from ``config``.

    Raises:
        ConfigError: it is not a member, or removing it would leave no voter.
    """
    _check_id("node_id", node_id)
    member = config.member(node_id)
    if member is None:
        raise ConfigError(
            "node_id", node_id, f"is not a member of configuration {config.describe()}"
        )
    if member.voter and config.voters == {node_id}:
        raise ConfigError(
            "node_id", node_id, "is the only voter; add another voter before removing it"
        )


def check_promote(config: Configuration, node_id: str) -> bool:
    """Whether promoting ``node_id`` changes anything; raise if it is not a member."""
    _check_id("node_id", node_id)
    member = config.member(node_id)
    if member is None:
        raise ConfigError(
            "node_id", node_id, f"is not a member of configuration {config.describe()}"
        )
    return not member.voter


def _roles(config: Configuration) -> tuple[tuple[str, bool], ...]:
    return tuple((member.node_id, member.voter) for member in config.members)


def _check_id(field: str, value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise ConfigError(field, value, f"must be a str of 1 to {MAX_ID_LENGTH} characters")

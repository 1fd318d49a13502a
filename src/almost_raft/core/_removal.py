"""Telling a member removed while it was down that it was removed, and leaving when told.

:class:`ElectionCore` inherits this. A member that is down while a change removes it
misses the heartbeats that carry the commit, and the leader stops telling it an election
timeout after the commit. When it comes back it holds an older configuration that still
names it; the members do not hear its vote requests (it is not in their configuration,
and it offers no newer one), and it would wait, unheard, for ever. So a node that knows
a committed configuration answers such a message with a :class:`RemovalNotice`, as
etcd's members answer a removed peer with 410 Gone.

Rules
-----
Rule 1 (only what committed). A notice carries the newest configuration its sender knows
committed (a leader that counted it, or a follower whose leader said so), never one
still pending: a pending change can still lose to one that keeps the member (a leader
that never had it wins), so it must never make a node leave.

Rule 2 (only the removed). A notice goes only to a sender that neither the node's own
configuration nor its committed one holds: a member being added again is named by the
pending configuration that adds it, and is not told. If the sender's message names its
configuration (a vote request, a heartbeat's answer, a heartbeat carrying one), it must
be a leader's (version 1 on) and no newer than the committed one. A new machine still
holds its starting configuration (version 0) until it is added, so it is never told.

Rule 3 (the receiver judges). A node leaves on a notice only if it holds a leader's
configuration, and the notice's is at least as new as its own and does not hold it. At
least as new, not newer: a member that saved its removal but stopped before it heard
the commit holds that very configuration. It saves the notice's configuration before it
stops, as a member that heard the commit from its leader does.

Rule 4 (no amplification). At most one notice per sender per election timeout, and no
more than :data:`MAX_TOLD` senders remembered at a time; a notice is never answered.
A notice changes no term and is never stale: that a configuration committed is true in
every term (the term rules let it through).

Rule 5 (the silent ask too). A voter asks with its pre-votes when it hears no leader; a
non-voter never campaigns, so it asks the members of its configuration with a
:class:`MembershipQuery` instead, once per election timeout without a leader. A member
that holds it answers nothing; the leader's heartbeats reach it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._configuration import Configuration
from ._messages import (
    HeartBeat,
    HeartBeatResponse,
    MembershipQuery,
    PeerMessage,
    RemovalNotice,
    RequestVote,
)

if TYPE_CHECKING:
    from ._config import ElectionConfig

__all__ = ["MAX_TOLD", "NoticeLimiter", "Removal", "leaves_on_notice", "notice_due"]

logger = logging.getLogger("almost_raft.core")

#: The most senders a node remembers having told at once; more are told nothing until
#: an election timeout has passed since the oldest was. Authenticated peers only reach
#: the core, so this bounds memory, not who is told.
MAX_TOLD = 64


def configuration_named(message: PeerMessage) -> tuple[int, int] | None:
    """The key of the sender's configuration, if ``message`` names it."""
    if isinstance(message, RequestVote | HeartBeatResponse | MembershipQuery):
        return message.config_key
    if isinstance(message, HeartBeat) and message.configuration is not None:
        return message.configuration.key
    return None


def notice_due(message: PeerMessage, ours: Configuration, committed: Configuration) -> bool:
    """Whether the sender of ``message``, which this node does not hear, is told that
    ``committed`` removed it (Rules 1 and 2); ``ours`` is this node's configuration."""
    if isinstance(message, RemovalNotice):
        return False
    sender = message.sender
    if sender in ours.ids or sender in committed.ids:
        return False
    key = configuration_named(message)
    return key is None or (key[1] > 0 and key <= committed.key)


def leaves_on_notice(node_id: str, ours: Configuration, offered: Configuration) -> bool:
    """Whether ``node_id``, holding ``ours``, leaves on a notice of ``offered`` (Rule 3)."""
    return ours.version > 0 and offered.key >= ours.key and node_id not in offered.ids


class NoticeLimiter:
    """At most one notice per sender per ``interval`` seconds, for ``capacity`` senders.

    Memory stays bounded: when ``capacity`` senders are remembered, those told more than
    ``interval`` ago are forgotten, and a new sender is refused while none is.
    """

    __slots__ = ("_capacity", "_interval", "_told")

    def __init__(self, interval: float, capacity: int = MAX_TOLD) -> None:
        self._interval = interval
        self._capacity = capacity
        self._told: dict[str, float] = {}

    def allow(self, node_id: str, now: float) -> bool:
        """Whether ``node_id`` may be told now; if so, that it was told is remembered."""
        told = self._told.get(node_id)
        if told is not None and now - told < self._interval:
            return False
        if told is None and len(self._told) >= self._capacity:
            self._told = {n: t for n, t in self._told.items() if now - t < self._interval}
            if len(self._told) >= self._capacity:
                return False
        self._told[node_id] = now
        return True

    def __len__(self) -> int:
        return len(self._told)


class Removal:
    """The removal notices of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore and its configuration half.
        node_id: str
        config: ElectionConfig
        _now: float
        _term: int
        _configuration: Configuration
        _committed: Configuration | None
        _committed_version: int
        _notices: NoticeLimiter

        def _send(self, to: str, message: PeerMessage) -> None: ...
        def _drop(self, reason: str, message: PeerMessage) -> bool: ...
        def _become_terminating(self) -> None: ...

    def _tell_if_removed(self, message: PeerMessage) -> None:
        """Answer a message this node does not hear with a notice, if it is due."""
        committed = self._committed
        if committed is None or not notice_due(message, self._configuration, committed):
            return
        if not self._notices.allow(message.sender, self._now):
            return
        logger.info(
            "%s: told %s that it was removed by configuration %s",
            self.node_id,
            message.sender,
            committed.describe(),
        )
        self._send(message.sender, RemovalNotice(self._term, self.node_id, committed))

    def _ask_whether_member(self) -> None:
        """A non-voter heard no leader for an election timeout: ask (Rule 5)."""
        config = self._configuration
        if config.version == 0 or self.node_id not in config.ids:
            return
        query = MembershipQuery(self._term, self.node_id, config.term, config.version)
        for peer in sorted(config.ids - {self.node_id}):
            self._send(peer, query)

    def _on_removal_notice(self, notice: RemovalNotice) -> None:
        offered = notice.configuration
        if not leaves_on_notice(self.node_id, self._configuration, offered):
            self._drop("removal_notice_ignored", notice)
            return
        logger.info(
            "%s: removed from the cluster by configuration %s (told by %s); leaving",
            self.node_id,
            offered.describe(),
            notice.member_id,
        )
        # Saved before the node stops, as the configuration of a member that heard the
        # commit from its leader is: the node then restarts knowing it is not a member.
        self._configuration = self._committed = offered
        self._committed_version = max(self._committed_version, offered.version)
        self._become_terminating()

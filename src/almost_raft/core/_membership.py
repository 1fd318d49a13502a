"""A leader's side of the configuration: who has saved which version, and when it commits.

Pure bookkeeping, free of roles and messages, as ``_quorum`` is for votes. The state
machine owns one :class:`Replication` while it leads and drops it when it stops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ._configuration import Configuration
from ._quorum import majority

__all__ = ["Replication"]


class Replication:
    """Tracks one leader's configuration until it commits, and the members it removed.

    Args:
        node_id: the leader's id.
        configuration: the configuration the leader just made (the restamped one).
    """

    __slots__ = (
        "_acked",
        "_leaving",
        "_members_sent_to",
        "configuration",
        "first_key",
        "gate_open",
        "holding",
        "node_id",
        "promote",
    )

    def __init__(self, node_id: str, configuration: Configuration) -> None:
        self.node_id = node_id
        self.configuration = configuration
        #: The key of the configuration the leader re-made in its term (the gate), once
        #: it has.
        self.first_key: tuple[int, int] | None = None
        # The newest configuration key each member said it saved.
        self._acked: dict[str, tuple[int, int]] = {}
        #: The members that said they saved the current configuration: what a heartbeat
        #: asks of each peer every round (read only; the leader is not in it).
        self.holding: set[str] = set()
        # Members a change removed, still told the outcome until the given time.
        self._leaving: dict[str, float] = {}
        # The recipients while no one is leaving, and the configuration they are of: the
        # same every round of a steady leader.
        self._members_sent_to: tuple[Configuration | None, tuple[str, ...]] = (None, ())
        #: Non-voters to promote once they are ready (see :meth:`is_ready`).
        self.promote: set[str] = set()
        #: Whether this term's configuration committed: changes may be made (the gate).
        self.gate_open = False

    def acknowledge(self, node_id: str, key: tuple[int, int]) -> None:
        """``node_id`` said it has saved the configuration with ``key``."""
        if key > self._acked.get(node_id, (-1, -1)):
            self._acked[node_id] = key
            if key >= self.configuration.key and node_id != self.node_id:
                self.holding.add(node_id)

    def has_saved(self, node_id: str) -> bool:
        """Whether ``node_id`` saved the current configuration (the leader always has)."""
        return (
            node_id == self.node_id or self._acked.get(node_id, (-1, -1)) >= self.configuration.key
        )

    def is_committed(self) -> bool:
        """Whether a majority of the configuration's own voters saved it (thesis 4.1).

        The leader counts itself: the caller carries out the batch's save before any
        answer reaches the core again.
        """
        voters = self.configuration.voters
        saved = sum(1 for voter in voters if self.has_saved(voter))
        return bool(voters) and saved >= majority(len(voters))

    def propose(self, configuration: Configuration, removed: str | None) -> None:
        """The leader made ``configuration``; ``removed`` names a member it drops."""
        assert configuration.version == self.configuration.version + 1, "one change at a time"
        self.configuration = configuration
        key = configuration.key
        self.holding = {
            node_id
            for node_id, acked in self._acked.items()
            if acked >= key and node_id != self.node_id
        }
        if removed is not None:
            self._leaving[removed] = math.inf
            self.promote.discard(removed)

    def committed(self, now: float, linger: float) -> None:
        """The configuration committed: tell removed members for ``linger`` more.

        An answer cannot say which heartbeat it answers, so it cannot tell whether the
        member saw the commit; a removed member that hears of it leaves and falls silent.
        """
        for node_id, until in self._leaving.items():
            if until == math.inf:
                self._leaving[node_id] = now + linger

    def recipients(self, now: float) -> tuple[str, ...]:
        """Whom the leader's heartbeats go to, sorted: members and leaving members."""
        leaving = self._leaving
        configuration = self.configuration
        if not leaving:
            cached_for, members = self._members_sent_to
            if cached_for is not configuration:
                members = tuple(sorted(configuration.ids - {self.node_id}))
                self._members_sent_to = (configuration, members)
            return members
        for node_id in [n for n, until in leaving.items() if until <= now]:
            del leaving[node_id]
        return tuple(sorted((configuration.ids | leaving.keys()) - {self.node_id}))

    def is_leaving(self, node_id: str) -> bool:
        """Whether ``node_id`` was removed and is still being told so."""
        return node_id in self._leaving

    def needs_configuration(self, node_id: str) -> bool:
        """Whether a heartbeat to ``node_id`` must carry the configuration."""
        return node_id != self.node_id and node_id not in self.holding

    def is_ready(self, node_id: str, answered_at: Mapping[str, float], since: float) -> bool:
        """Whether ``node_id`` may become a voter: it saved the configuration and
        answered the leader after ``since`` (``answered_at`` maps a peer to its last
        answer; the leader always counts as heard).

        Saving alone is not enough: a member that saved the configuration once and has
        been down since would, as a voter, be needed for a majority it cannot give.
        """
        if node_id == self.node_id:
            return True
        return self.has_saved(node_id) and answered_at.get(node_id, -math.inf) > since

    def promotion_wait(
        self, node_id: str, answered_at: Mapping[str, float], since: float, now: float
    ) -> str:
        """What the promotion of ``node_id`` waits for, in words (see :meth:`is_ready`)."""
        saved = "has saved it" if self.has_saved(node_id) else "has not saved it"
        last = answered_at.get(node_id)
        if last is None:
            heard = "has not answered this leader"
        elif last <= since:
            heard = f"last answered {now - last:.3f}s ago"
        else:
            heard = "answers"
        return (
            f"{node_id} will be promoted once it has saved configuration "
            f"v{self.configuration.version} and answers; it {saved} and {heard}"
        )

    def ready_to_promote(self, answered_at: Mapping[str, float], since: float) -> str | None:
        """A non-voter waiting for promotion that :meth:`is_ready`, if any."""
        for node_id in sorted(self.promote):
            member = self.configuration.member(node_id)
            if member is None or member.voter:
                self.promote.discard(node_id)
            elif self.is_ready(node_id, answered_at, since):
                return node_id
        return None

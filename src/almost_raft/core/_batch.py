"""Collecting one input's effects into an :class:`Output`, reporting only what changed."""

from __future__ import annotations

from ._configuration import Configuration
from ._lease import Lease
from ._messages import PeerMessage
from ._outputs import LeaderChange, Outbound, Output
from ._state import HardState, NodeState

__all__ = ["BatchBuilder"]


class BatchBuilder:
    """Gathers the messages of one input and remembers what the caller was last told.

    The core calls :meth:`send` while it handles an input and :meth:`finish` once at the
    end; each batch then carries ``hard_state``, ``leader_change`` and ``role`` only when
    they differ from the previous batch, as etcd's ``Ready`` carries ``SoftState``.
    """

    __slots__ = (
        "_outbox",
        "_quiet",
        "_reported_hard_state",
        "_reported_leader",
        "_reported_lease",
        "_reported_role",
    )

    def __init__(self, hard_state: HardState, role: NodeState) -> None:
        self._outbox: list[Outbound] = []
        self._reported_hard_state = hard_state
        self._reported_leader: tuple[str | None, int | None] = (None, None)
        self._reported_role = role
        self._reported_lease: Lease | None = None
        # The last batch that reported nothing but its deadline: a leader's answers
        # mostly make such a batch, and an Output is immutable, so it serves again.
        self._quiet: Output | None = None

    def send(self, to: str, message: PeerMessage, *, early: bool = False) -> None:
        """Add a message to the batch under way; ``early`` as on :class:`Outbound`."""
        self._outbox.append(Outbound(to, message, early))

    def finish(
        self,
        term: int,
        voted_for: str | None,
        leader: str | None,
        role: NodeState,
        next_deadline: float,
        configuration: Configuration | None = None,
        committed: Configuration | None = None,
        lease: Lease | None = None,
    ) -> tuple[Output, bool]:
        """Close the batch; also return whether it reports a change of leader."""
        # Called once per input, so it compares fields rather than building tuples.
        outbox = self._outbox
        messages: tuple[Outbound, ...] = ()
        if outbox:
            messages = tuple(outbox)
            outbox.clear()
        hard_state = None
        reported = self._reported_hard_state
        if (
            term != reported.term
            or voted_for != reported.voted_for
            or configuration is not reported.configuration
        ):
            hard_state = self._reported_hard_state = HardState(term, voted_for, configuration)
        leader_change = None
        reported_leader, reported_term = self._reported_leader
        if leader != reported_leader or (leader is not None and term != reported_term):
            self._reported_leader = (leader, term if leader is not None else None)
            leader_change = LeaderChange(leader, term)
        changed_role = None
        if role is not self._reported_role:
            changed_role = self._reported_role = role
        changed_lease = None
        if lease is not self._reported_lease and lease != self._reported_lease:
            changed_lease = self._reported_lease = lease
        if (
            not messages
            and hard_state is None
            and leader_change is None
            and changed_role is None
            and committed is None
            and changed_lease is None
        ):
            quiet = self._quiet
            if quiet is None or quiet.next_deadline != next_deadline:
                quiet = self._quiet = Output(next_deadline=next_deadline)
            return quiet, False
        output = Output(
            messages,
            hard_state,
            leader_change,
            changed_role,
            next_deadline,
            committed,
            lease=changed_lease,
        )
        return output, leader_change is not None

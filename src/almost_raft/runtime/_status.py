"""What the runtime reports about itself: the status snapshot and its counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..core._configuration import Configuration
from ..core._state import NodeState

__all__ = ["ElectionStatus", "RuntimeMetrics"]


@dataclasses.dataclass(frozen=True, slots=True)
class ElectionStatus:
    """A snapshot of one node's election state, cheap to take at any time.

    Attributes:
        node_id: this node's id.
        term: its current term.
        role: the role it plays (``TERMINATING`` once closed).
        leader_id: the leader of ``term`` as far as it knows, or ``None``.
        voted_for: whom it voted for in ``term``, if anyone.
        peers: the other voting members.
        is_leader: whether this node is the leader.
        last_heard: seconds since a message last arrived from each peer; a peer never
            heard from since this node started is absent.
        configuration: the configuration in force on this node (its members, voters
            and version), committed or not; ``None`` before the node starts.
        committed_version: the newest configuration version this node knows to be
            committed (0 if none).
        change_pending: on a leader, whether a change of members is under way: a
            configuration not yet committed, a change waiting for this term's first
            commit, or a non-voter waiting to be promoted until it has saved the
            configuration and answers; ``False`` elsewhere.
    """

    node_id: str
    term: int
    role: NodeState
    leader_id: str | None
    voted_for: str | None
    peers: frozenset[str]
    is_leader: bool
    last_heard: Mapping[str, float] = dataclasses.field(default_factory=dict)
    configuration: Configuration | None = None
    committed_version: int = 0
    change_pending: bool = False


@dataclasses.dataclass(slots=True)
class RuntimeMetrics:
    """Counters the runtime keeps; read them, never write them.

    Attributes:
        inputs_dropped: peer messages dropped because too many were waiting.
        messages_sent: sends started (one per message per peer).
        sends_failed: sends whose transport call raised.
        sends_timed_out: sends cut off after ``message_timeout`` (only sends through
            ``Transport.send``; ``send_nowait`` never waits).
        state_saves: hard states made durable.
    """

    inputs_dropped: int = 0
    messages_sent: int = 0
    sends_failed: int = 0
    sends_timed_out: int = 0
    state_saves: int = 0

"""The seed's control messages: how a user of :func:`raft_election` talks to it.

They travel on the same queues as peer messages, so they subclass
:class:`~almost_raft.Message`, and, as in the Rust crate, each is reachable as an
attribute of it (``Message.ControlAddNode(node)``). They never cross the network.
"""

from __future__ import annotations

import dataclasses

from ..core._messages import Message, check_node_id, check_term
from ._node import Node

__all__ = ["ControlAddNode", "ControlLeaderChanged", "ControlRemoveNode"]


@dataclasses.dataclass(frozen=True, slots=True)
class ControlAddNode(Message):
    """Seed API: add ``node`` to the cluster (refused, with a log line, past ``max_node``)."""

    node: Node

    def __post_init__(self) -> None:
        if not isinstance(self.node, Node):
            raise TypeError(f"ControlAddNode needs a Node, got {type(self.node).__name__}")


@dataclasses.dataclass(frozen=True, slots=True)
class ControlRemoveNode(Message):
    """Seed API: remove ``node``; naming this node itself ends :func:`raft_election`."""

    node: Node

    def __post_init__(self) -> None:
        if not isinstance(self.node, Node):
            raise TypeError(f"ControlRemoveNode needs a Node, got {type(self.node).__name__}")


@dataclasses.dataclass(frozen=True, slots=True)
class ControlLeaderChanged(Message):
    """Sent to the user when the leader changes.

    ``leader_id`` is ``None`` when this node no longer knows a leader. ``term`` is the
    term of that leadership: a number that only grows, usable as a fencing token.
    """

    leader_id: str | None
    term: int = 0

    def __post_init__(self) -> None:
        if self.leader_id is not None:
            check_node_id("leader_id", self.leader_id)
        check_term(self.term)


# The crate's spelling, Message::ControlAddNode. Attached here rather than declared on
# Message, because the core knows nothing of the seed API.
Message.ControlAddNode = ControlAddNode
Message.ControlRemoveNode = ControlRemoveNode
Message.ControlLeaderChanged = ControlLeaderChanged

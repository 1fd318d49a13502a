"""The seed's ``Node``: a peer the user's own code knows how to reach."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core._messages import Message

__all__ = ["Node"]


class Node(abc.ABC):
    """A member of the cluster, as seen from this node, that can carry messages to its peer.

    Implement this when you bring your own transport (the Rust crate's ``Node`` trait).
    almost-raft calls :meth:`send_message` for every message addressed to the peer and
    :meth:`node_id` to learn whom it stands for. Delivery may drop, delay, duplicate or
    reorder messages; the election stays safe regardless and only needs most messages to
    arrive for progress. The receiving side delivers a message by putting it on its own
    ``to_raft`` queue.
    """

    @abc.abstractmethod
    async def send_message(self, msg: Message) -> None:
        """Carry ``msg`` to this peer.

        Called once per message, each call in its own task and cut off after
        ``message_timeout``, so a slow peer never delays the others. An exception is logged
        and counted as a failed send; it does not stop the election.
        """

    @abc.abstractmethod
    def node_id(self) -> str:
        """This peer's id, unique in the cluster and stable across restarts."""

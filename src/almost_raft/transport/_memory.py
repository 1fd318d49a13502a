"""An in-process network for tests, simulations and the demo; a public testing tool.

Every node of an :class:`InMemoryNetwork` lives in one event loop. A message is handed to
the receiver after the delay its :class:`NetworkFaults` decides (``loop.call_later``),
or lost, or handed over twice, so tests can reproduce lossy networks, partitions and
crashed processes without sockets. :meth:`InMemoryNetwork.crash` tells the crashed node's
peers what the TCP transport would: its connections ended, then a redial was refused.
"""

from __future__ import annotations

import asyncio
import logging

from ..core._messages import PeerMessage
from ._faults import NetworkFaults
from ._interface import Inbox, Transport

__all__ = ["InMemoryNetwork", "InMemoryTransport"]

logger = logging.getLogger("almost_raft.memory")


class InMemoryNetwork:
    """A network of nodes in this process, with seeded faults.

    Each node gets its transport from :meth:`transport`. A message to a node whose
    transport is not started, or was closed, is dropped, which is how a crashed process
    looks from outside; a node "restarts" with a new transport for the same id.

    Delivery follows the transport contract at its weakest when ``faults`` say so:
    messages may be dropped, delayed, duplicated and (with random delays) reordered.

    Args:
        faults: decides the fate of every message; ``NetworkFaults()`` (a perfect
            network with no delay) if not given. Change it at any time, e.g.
            ``network.faults.isolate("a")`` and later ``network.faults.heal()``.

    Attributes:
        faults: the fault model in use.
        sent: messages handed to :meth:`InMemoryTransport.send`.
        delivered: copies handed to a receiver (a duplicate counts twice).
        dropped: messages lost to faults, plus copies that found no live receiver.
    """

    def __init__(self, faults: NetworkFaults | None = None) -> None:
        self.faults = faults if faults is not None else NetworkFaults()
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self._inboxes: dict[str, tuple[InMemoryTransport, Inbox]] = {}

    def transport(self, node_id: str) -> InMemoryTransport:
        """A new transport for ``node_id`` on this network; start it to receive."""
        return InMemoryTransport(self, node_id)

    @property
    def live_nodes(self) -> frozenset[str]:
        """The ids whose transport is started and not closed."""
        return frozenset(self._inboxes)

    def crash(self, node_id: str) -> None:
        """``node_id``'s process dies, as its TCP peers would see it.

        Its transport stops at once, as a closed one does, and every live node hears
        what the TCP transport would tell it (the faults decide the delays, and a cut
        link carries nothing): that its connection to ``node_id`` ended
        (:meth:`Inbox.peer_disconnected`) one message delay later, then that a redial
        was refused (:meth:`Inbox.peer_unreachable`) a round trip after that. A node
        whose transport is merely closed tells its peers nothing, as a process that went
        silent. Does nothing if ``node_id`` is not running.
        """
        entry = self._inboxes.pop(node_id, None)
        if entry is None:
            return
        entry[0]._closed = True
        loop = asyncio.get_running_loop()
        faults = self.faults
        for peer in sorted(self._inboxes):
            # The dead host's kernel closes the connections: its end reaches the peer.
            ended = faults.transit(node_id, peer)
            if ended is None:
                continue
            loop.call_later(ended, self._tell, peer, node_id, False)
            # The peer redials: the SYN there and the reset back.
            there, back = faults.transit(peer, node_id), faults.transit(node_id, peer)
            if there is not None and back is not None:
                loop.call_later(ended + there + back, self._tell, peer, node_id, True)

    def _tell(self, receiver: str, about: str, refused: bool) -> None:
        entry = self._inboxes.get(receiver)
        if entry is None or about in self._inboxes:
            # The receiver is gone, or the crashed node is back and its peers reconnect.
            return
        inbox = entry[1]
        if refused:
            inbox.peer_unreachable(about)
        else:
            inbox.peer_disconnected(about)

    def _attach(self, transport: InMemoryTransport, inbox: Inbox) -> None:
        node_id = transport.node_id
        if node_id in self._inboxes:
            raise RuntimeError(f"node {node_id!r} is already running on this network")
        self._inboxes[node_id] = (transport, inbox)

    def _detach(self, transport: InMemoryTransport) -> None:
        entry = self._inboxes.get(transport.node_id)
        if entry is not None and entry[0] is transport:
            del self._inboxes[transport.node_id]

    def _send(self, sender: str, receiver: str, message: PeerMessage) -> None:
        self.sent += 1
        delays = self.faults.deliveries(sender, receiver)
        if not delays:
            self.dropped += 1
            return
        loop = asyncio.get_running_loop()
        for delay in delays:
            if delay > 0:
                loop.call_later(delay, self._deliver, receiver, message)
            else:
                loop.call_soon(self._deliver, receiver, message)

    def _deliver(self, receiver: str, message: PeerMessage) -> None:
        entry = self._inboxes.get(receiver)
        if entry is None:
            self.dropped += 1
            return
        self.delivered += 1
        entry[1].deliver(message)


class InMemoryTransport(Transport):
    """One node's connection to an :class:`InMemoryNetwork`.

    :meth:`send` and :meth:`send_nowait` never block and never raise: the message is
    scheduled for delivery (or lost) and the call returns.
    """

    def __init__(self, network: InMemoryNetwork, node_id: str) -> None:
        self.network = network
        self.node_id = node_id
        self._started = False
        self._closed = False

    async def start(self, node_id: str, inbox: Inbox) -> None:
        """Receive messages for ``node_id`` into ``inbox``.

        Raises:
            ValueError: ``node_id`` is not the id this transport was made for.
            RuntimeError: it was started before, or a live transport already has the id.
        """
        if node_id != self.node_id:
            raise ValueError(f"this transport is for {self.node_id!r}, not {node_id!r}")
        if self._started or self._closed:
            raise RuntimeError(f"the transport of {node_id!r} was already started")
        self.network._attach(self, inbox)
        self._started = True

    async def send(self, to: str, message: PeerMessage) -> None:
        """Schedule ``message`` for ``to``; dropped (and counted) once this is closed."""
        self.send_nowait(to, message)

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        """Do what :meth:`send` does, which never waits; always returns True."""
        if self._closed:
            self.network.dropped += 1
        else:
            self.network._send(self.node_id, to, message)
        return True

    async def close(self) -> None:
        """Stop receiving; messages to this node are dropped from now on."""
        if not self._closed:
            self._closed = True
            self.network._detach(self)

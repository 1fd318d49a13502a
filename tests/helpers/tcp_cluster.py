"""Transports on 127.0.0.1 for the TCP transport's tests: a cluster of them, quick redials,
and listeners that accept nothing.

Every port is picked by the kernel (port 0), so the tests never collide with other
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from almost_raft.core._messages import PeerMessage
from almost_raft.transport.tcp._metrics import TcpMetrics
from almost_raft.transport.tcp._transport import TcpTransport
from helpers.transport import Inbox

CLUSTER = "test"
LOCALHOST = "127.0.0.1"
# Quick redials keep the tests short; the defaults are for real networks.
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.1}
# A connection that ends younger than twice backoff_initial counts as closed on arrival
# (a dying listener's backlog, or a refusal), not as a break.
OLD_ENOUGH = 2 * FAST["backoff_initial"]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


class Cluster:
    """Transports started on free ports, each knowing every other's address."""

    def __init__(self) -> None:
        self.transports: dict[str, TcpTransport] = {}
        self.inboxes: dict[str, Inbox] = {}

    async def start(
        self, node_id: str, listen: tuple[str, int] = (LOCALHOST, 0), **options: Any
    ) -> TcpTransport:
        transport = TcpTransport(listen=listen, peers={}, cluster_id=CLUSTER, **(FAST | options))
        self.inboxes[node_id] = Inbox()
        await transport.start(node_id, self.inboxes[node_id])
        self.transports[node_id] = transport
        for other_id, other in self.transports.items():
            if other_id != node_id:
                other.set_peer_address(node_id, transport.address)
                transport.set_peer_address(other_id, other.address)
        return transport

    def __getitem__(self, node_id: str) -> TcpTransport:
        return self.transports[node_id]

    def received(self, node_id: str) -> list[PeerMessage]:
        return self.inboxes[node_id].messages

    async def close(self) -> None:
        for transport in self.transports.values():
            await transport.close()


@contextlib.asynccontextmanager
async def cluster(*node_ids: str, **options: Any) -> AsyncIterator[Cluster]:
    nodes = Cluster()
    try:
        for node_id in node_ids:
            await nodes.start(node_id, **options)
        yield nodes
    finally:
        await nodes.close()


def bad_counters(metrics: TcpMetrics) -> dict[str, int]:
    names = [
        "bad_oversized",
        "bad_undecodable",
        "bad_unknown_kind",
        "bad_field",
        "bad_impersonation",
        "handshakes_refused",
        "bad_tls",
    ]
    return {name: getattr(metrics, name) for name in names if getattr(metrics, name)}


def silent_listener(backlog: int = 8) -> socket.socket:
    """A port whose connections the kernel completes but nobody accepts or reads.

    The tiny receive buffer makes a writer to it block after a few kilobytes.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((LOCALHOST, 0))
    sock.listen(backlog)
    return sock


def address_of(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return (host, port)

"""Two real TCP transports on 127.0.0.1 that know each other, for the transport tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from almost_raft.transport.tcp._transport import TcpTransport
from helpers.transport import Inbox

LOCALHOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def two_nodes(
    *, on_demand: bool = False, **options: Any
) -> AsyncIterator[tuple[TcpTransport, TcpTransport, dict[str, Inbox]]]:
    """Transports ``a`` and ``b`` made with ``options``, that know each other's address,
    closed at the end; ``on_demand`` makes ``a`` dial ``b`` only while a message waits."""
    inboxes = {"a": Inbox(), "b": Inbox()}
    transports = {
        node: TcpTransport(listen=(LOCALHOST, 0), peers={}, cluster_id="test", **options)
        for node in inboxes
    }
    try:
        for node, transport in transports.items():
            await transport.start(node, inboxes[node])
        a, b = transports["a"], transports["b"]
        a.set_peer_address("b", b.address)
        b.set_peer_address("a", a.address)
        if on_demand:
            a.dial_on_demand("b")
        yield a, b, inboxes
    finally:
        for transport in transports.values():
            await transport.close()

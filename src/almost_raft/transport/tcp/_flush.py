"""Closing without losing the last messages: wait until what waits for live peers has left.

A leader that leaves sends its last messages (a hand-over's ``TimeoutNow``, the last
heartbeats) just before the runtime closes the transport. Those frames may still sit in
a peer's queue (a dial under way, flow control) or in the socket's user-space buffer;
aborting the connection would discard them. Once a frame is in the kernel, closing the
socket no longer loses it: the kernel still sends it, then the FIN.

The wait is event driven, never a sleep: it wakes when a queue empties into its
connection, a connection flushes (asyncio resumes a protocol whose flow-control marks are
both zero only once its buffer is empty) or ends, or a dial ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from ._peer_link import Peer

__all__ = ["flush", "waits_to_leave"]


def waits_to_leave(peer: Peer) -> bool:
    """Whether ``peer`` has frames not yet in the kernel that may still get there."""
    connection = peer.connection
    if connection is not None and not connection.closed:
        return bool(peer.queue) or connection.unsent > 0
    # Without a connection only a dial under way can still carry the queue; a peer in
    # backoff gets nothing before the bound, and a failed dial drops its queue.
    return bool(peer.queue) and peer.dialling


async def flush(peers: Iterable[Peer], changed: asyncio.Event, bound: float) -> None:
    """Return once no peer :func:`waits_to_leave`, or after ``bound`` seconds.

    ``changed`` is set whenever a peer's state may have moved on (its queue emptied, its
    connection flushed or ended, its dial ended).
    """
    peers = list(peers)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(bound):
            while True:
                changed.clear()
                waiting = [peer for peer in peers if waits_to_leave(peer)]
                if not waiting:
                    return
                for peer in waiting:
                    if peer.connection is not None:
                        # Resume (and so set changed) only once nothing is left to send.
                        peer.connection.hold_until_sent()
                await changed.wait()

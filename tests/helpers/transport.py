"""Shared pieces of the transport tests: an inbox that records, and polling with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from almost_raft import PeerMessage

#: How often a poll looks again: often enough to be quick, rare enough to stay cheap.
POLL_SECONDS = 0.005


class Inbox:
    """Keeps what a transport delivers, and which peers it reported unreachable or
    disconnected."""

    def __init__(self) -> None:
        self.messages: list[PeerMessage] = []
        self.unreachable: list[str] = []
        self.disconnected: list[str] = []

    def deliver(self, message: PeerMessage) -> None:
        self.messages.append(message)

    def peer_unreachable(self, peer_id: str) -> None:
        self.unreachable.append(peer_id)

    def peer_disconnected(self, peer_id: str) -> None:
        self.disconnected.append(peer_id)


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""

    async def attempt() -> bool:
        return condition()

    await eventually_async(attempt, what, timeout)


async def eventually_async(
    attempt: Callable[[], Awaitable[bool]], what: str, timeout: float = 5.0
) -> None:
    """Run ``attempt`` until it returns True; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await attempt():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)

"""The runtime bounds a transport's closing flush, and still closes transports that cannot."""

from __future__ import annotations

import random
from typing import Any

from almost_raft import ElectionConfig, MemoryStore, PeerMessage, Transport
from almost_raft.runtime._driver import Runtime
from almost_raft.transport._interface import Inbox, close_transport
from helpers.cluster import run_async


class _Quiet(Transport):
    """Takes every message and drops it; records how it was closed."""

    def __init__(self) -> None:
        self.closed_with: list[dict[str, Any]] = []

    async def start(self, node_id: str, inbox: Inbox) -> None:
        pass

    async def send(self, to: str, message: PeerMessage) -> None:
        pass

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        return True

    async def close(self) -> None:
        self.closed_with.append({})


class _Flushing(_Quiet):
    async def close(self, *, flush_timeout: float | None = None) -> None:
        self.closed_with.append({"flush_timeout": flush_timeout})


class _AnyKeywords(_Quiet):
    async def close(self, **options: Any) -> None:
        self.closed_with.append(options)


@run_async
async def test_a_close_without_the_argument_is_called_bare() -> None:
    transport = _Quiet()
    await close_transport(transport, 0.5)
    assert transport.closed_with == [{}]


@run_async
async def test_a_close_that_takes_the_bound_gets_it() -> None:
    for transport in (_Flushing(), _AnyKeywords()):
        await close_transport(transport, 0.5)
        assert transport.closed_with == [{"flush_timeout": 0.5}]


@run_async
async def test_the_runtime_bounds_the_flush_by_message_timeout() -> None:
    config = ElectionConfig(election_timeout=30.0, heartbeat_interval=1.0, message_timeout=0.7)
    for transport in (_Flushing(), _Quiet()):
        runtime = Runtime("a", ["b", "c"], transport, config, MemoryStore(), random.Random(1))
        await runtime.start()
        await runtime.close()
        expected = {"flush_timeout": 0.7} if isinstance(transport, _Flushing) else {}
        assert transport.closed_with == [expected]

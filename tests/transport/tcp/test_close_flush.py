"""Closing the TCP transport flushes what waits for live peers, bounded, with no fixed wait."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from almost_raft.core._messages import HeartBeat, TimeoutNow
from almost_raft.transport.tcp._flush import flush, waits_to_leave
from almost_raft.transport.tcp._framing import FramedConnection
from almost_raft.transport.tcp._metrics import TcpMetrics
from almost_raft.transport.tcp._peer_link import Peer, PeerLink
from almost_raft.transport.tcp._settings import TcpSettings
from almost_raft.transport.tcp._transport import TcpTransport
from helpers.transport import Inbox, eventually

pytestmark = pytest.mark.slow

CLUSTER = "test"
LOCALHOST = "127.0.0.1"
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.1}
# Far beyond any test's patience: a close that waited on a timer would never return in time.
FOREVER = 3600.0


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


async def started(node_id: str, inbox: Inbox, **options: Any) -> TcpTransport:
    transport = TcpTransport(
        listen=(LOCALHOST, 0), peers={}, cluster_id=CLUSTER, **(FAST | options)
    )
    await transport.start(node_id, inbox)
    return transport


async def pair() -> tuple[TcpTransport, TcpTransport, Inbox]:
    """``a`` and ``b``, each dialled by the other; returns b's inbox."""
    inbox_b = Inbox()
    a = await started("a", Inbox())
    b = await started("b", inbox_b)
    a.set_peer_address("b", b.address)
    b.set_peer_address("a", a.address)
    await a.send("b", HeartBeat(1, "a"))
    await eventually(lambda: len(inbox_b.messages) == 1, "a's connection to b")
    return a, b, inbox_b


async def within(seconds: float, what: str, awaitable: Awaitable[None]) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise AssertionError(f"{what} did not return within {seconds} s") from None
    return loop.time() - began


def test_a_close_with_nothing_queued_waits_on_no_timer() -> None:
    async def body() -> None:
        a, b, _ = await pair()
        try:
            # Unbounded flush: only "nothing waits" can end it, so it did not sleep a bound.
            took = await within(5.0, "close with nothing queued", a.close(flush_timeout=FOREVER))
            assert took < 5.0
            assert a.metrics.dropped_not_connected == 0
        finally:
            await b.close()

    run(body)


def test_flush_returns_at_once_when_no_peer_waits() -> None:
    async def body() -> None:
        idle = Peer("b", (LOCALHOST, 1))
        never = asyncio.Event()
        assert not waits_to_leave(idle)
        await within(5.0, "a flush with nothing to send", flush([idle], never, FOREVER))

    run(body)


def test_a_frame_queued_during_the_dial_reaches_the_live_peer() -> None:
    async def body() -> None:
        inbox_b = Inbox()
        b = await started("b", inbox_b)
        a = await started("a", Inbox())
        try:
            b.set_peer_address("a", a.address)
            # The dial has not even begun: the hand-over can only wait in the queue.
            a.set_peer_address("b", b.address)
            await a.send("b", TimeoutNow(7, "a"))
            assert a.queued("b") == 1
            await within(10.0, "close while the dial is under way", a.close(flush_timeout=FOREVER))
            # It reached the kernel before close returned: written, nothing dropped.
            assert a.metrics.sent.timeout_now == 1
            assert a.metrics.dropped_not_connected == 0
            await eventually(lambda: inbox_b.messages == [TimeoutNow(7, "a")], "the hand-over at b")
        finally:
            await a.close()
            await b.close()

    run(body)


def test_frames_held_back_by_flow_control_leave_before_close_returns() -> None:
    async def body() -> None:
        a, b, inbox_b = await pair()
        try:
            peer = a._peers["b"]
            connection = peer.connection
            assert connection is not None
            # As if the kernel's buffer were full: writes wait in the queue.
            connection.pause_writing()
            for term in range(2, 6):
                await a.send("b", HeartBeat(term, "a"))
            await a.send("b", TimeoutNow(6, "a"))
            assert a.queued("b") == 5
            closing = asyncio.ensure_future(a.close(flush_timeout=FOREVER))
            transport = connection.transport
            assert transport is not None
            # The flush holds the connection until its frames are out (both marks at zero)
            # and waits for that; a close that dropped them would have returned instead.
            await eventually(
                lambda: closing.done() or transport.get_write_buffer_limits() == (0, 0),
                "close to return or to wait for the frames",
            )
            assert not closing.done(), "close dropped what flow control held back"
            assert a.queued("b") == 5
            connection.resume_writing()
            await within(10.0, "close once writes resume", closing)
            assert a.metrics.dropped_not_connected == 0
            expected = [HeartBeat(t, "a") for t in range(1, 6)] + [TimeoutNow(6, "a")]
            await eventually(lambda: inbox_b.messages == expected, "every frame at b, in order")
        finally:
            await a.close()
            await b.close()

    run(body)


def test_a_close_against_a_peer_that_does_not_read_returns_by_the_bound() -> None:
    async def body() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        silent.bind((LOCALHOST, 0))
        silent.listen(8)
        a = await started("a", Inbox(), queue_size=8, send_buffer_bytes=4096)
        try:
            host, port = silent.getsockname()[:2]
            a.set_peer_address("silent", (host, port))
            await eventually(lambda: a._peers["silent"].connection is not None, "the connection")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10.0
            term = 0
            while True:
                # Until the kernel takes no more: then the queue stays full.
                written = a.metrics.sent.heartbeat
                for _ in range(200):
                    term += 1
                    await a.send("silent", HeartBeat(term, "a"))
                    await asyncio.sleep(0)
                # No event tells when the peer's window has shut (asyncio pauses the writer
                # whenever the kernel's buffer is full for a moment): writes stopped for a
                # whole round and this long more are taken as stopped for good.
                await asyncio.sleep(0.05)
                if a.metrics.sent.heartbeat == written and a.queued("silent") == 8:
                    break
                assert loop.time() < deadline, "the silent peer never stopped taking data"
            bound = 0.3
            took = await within(
                10.0, "close against a peer that does not read", a.close(flush_timeout=bound)
            )
            # It waited for the frames, then gave up at the bound (with room for a busy machine).
            assert bound * 0.9 <= took < bound + 5.0
            assert a.metrics.dropped_not_connected >= 8
        finally:
            await a.close()
            silent.close()

    run(body)


class BufferingTransport(asyncio.Transport):
    """Keeps written bytes in a user-space buffer until the test lets the kernel take them,
    with asyncio's flow control: pause above the high mark, resume at or below the low."""

    def __init__(self, protocol: FramedConnection) -> None:
        super().__init__()
        self.protocol = protocol
        self.buffered = 0
        self.high = 64 * 1024
        self.low = 16 * 1024
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffered += len(data)
        self._maybe_pause()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high, self.low = high or 0, low or 0
        self._maybe_pause()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def drain_to_kernel(self) -> None:
        self.buffered = 0
        if self.paused and self.buffered <= self.low:
            self.paused = False
            self.protocol.resume_writing()

    def _maybe_pause(self) -> None:
        if not self.paused and self.buffered > self.high:
            self.paused = True
            self.protocol.pause_writing()

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_bytes_still_in_the_socket_buffer_are_waited_for_without_a_timer() -> None:
    async def body() -> None:
        settings = TcpSettings(
            cluster_id=CLUSTER,
            max_frame_bytes=4096,
            queue_size=8,
            connect_timeout=1.0,
            handshake_timeout=1.0,
            write_timeout=5.0,
            backoff_initial=0.01,
            backoff_max=0.1,
            send_buffer_bytes=4096,
            tls=None,
            secret=None,
        )
        link = PeerLink("a", Inbox(), settings, TcpMetrics(), random.Random(1))
        connection = FramedConnection(4096)
        transport = BufferingTransport(connection)
        connection.connection_made(transport)
        peer = Peer("b", (LOCALHOST, 1))
        peer.connection = connection
        connection.on_resume = lambda: link._flush(peer)
        link.send(peer, "timeout_now", b"x" * 100)
        # Under the high mark: nothing queued, yet the frame is not in the kernel.
        assert not peer.queue
        assert waits_to_leave(peer)
        flushing = asyncio.ensure_future(flush([peer], link.changed, FOREVER))
        # Holding the connection until its bytes are out pauses it: the flush waits for them.
        await eventually(lambda: flushing.done() or transport.paused, "the flush to wait or end")
        assert not flushing.done(), "the flush ignored bytes still in the socket buffer"
        transport.drain_to_kernel()
        await within(5.0, "the flush once the buffer is empty", flushing)

    run(body)

"""The framed connection and the sending half, driven by hand through a fake transport.

No sockets: each test feeds ``data_received`` the bytes a peer could send, in whatever
pieces it likes, and calls ``pause_writing``/``resume_writing`` as asyncio would.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from almost_raft.core._messages import HeartBeat, PeerMessage, RequestVote
from almost_raft.transport.tcp._framing import FramedConnection
from almost_raft.transport.tcp._handshake_frames import (
    Handshake,
    decode_handshake,
    encode_handshake,
)
from almost_raft.transport.tcp._metrics import TcpMetrics
from almost_raft.transport.tcp._peer_link import Peer, PeerLink
from almost_raft.transport.tcp._settings import TcpSettings
from almost_raft.transport.tcp._wire import (
    PROTOCOL_VERSION,
    FrameProblem,
    WireError,
    decode_message,
    encode_message,
)
from helpers.cluster import run_async
from helpers.transport import Inbox, eventually

MAX_FRAME_BYTES = 4096


class FakeTransport(asyncio.Transport):
    """Records what is written and how reading is paused; aborts as asyncio does."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.reading = True
        self.aborted = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.aborted, "a write after abort()"
        self.written.append(bytes(data))

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            # As asyncio's transports do: the protocol hears of it on the next turn.
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def connected(**options: Any) -> tuple[FramedConnection, FakeTransport]:
    connection = FramedConnection(MAX_FRAME_BYTES, **options)
    transport = FakeTransport()
    transport.protocol = connection
    connection.connection_made(transport)
    return connection, transport


class Received:
    """The frame callbacks of a receiving connection: bodies decoded, refusals kept."""

    def __init__(self) -> None:
        self.messages: list[PeerMessage] = []
        self.refusals: list[WireError] = []

    def frame(self, body: bytes) -> None:
        self.messages.append(decode_message(body))

    def refused(self, exc: WireError) -> None:
        self.refusals.append(exc)


def receiving() -> tuple[FramedConnection, FakeTransport, Received]:
    connection, transport = connected()
    received = Received()
    connection.receive(received.frame, received.refused)
    return connection, transport, received


MESSAGES: list[PeerMessage] = [HeartBeat(term, "a") for term in range(1, 6)] + [
    RequestVote(7, "a", pre_vote=True)
]
STREAM = b"".join(encode_message(message) for message in MESSAGES)


# ------------------------------------------------------------------------- cutting frames


@run_async
async def test_a_frame_split_into_single_bytes_arrives_once_whole() -> None:
    connection, _, received = receiving()
    frame = encode_message(HeartBeat(3, "a"))
    for index in range(len(frame) - 1):
        connection.data_received(frame[index : index + 1])
        assert received.messages == []
    connection.data_received(frame[-1:])
    assert received.messages == [HeartBeat(3, "a")]


@run_async
async def test_many_frames_in_one_call_all_arrive_in_order() -> None:
    connection, _, received = receiving()
    connection.data_received(STREAM)
    assert received.messages == MESSAGES


@pytest.mark.parametrize("seed", range(20))
@run_async
async def test_a_stream_cut_anywhere_arrives_whole_and_in_order(seed: int) -> None:
    rng = random.Random(seed)
    connection, _, received = receiving()
    data = STREAM * 3
    offset = 0
    while offset < len(data):
        step = rng.randint(1, 40)
        connection.data_received(data[offset : offset + step])
        offset += step
    assert received.messages == MESSAGES * 3
    assert received.refusals == []


@run_async
async def test_an_oversized_header_is_refused_before_its_body_is_kept() -> None:
    connection, transport, received = receiving()
    header = (MAX_FRAME_BYTES + 1).to_bytes(4, "big")
    connection.data_received(encode_message(HeartBeat(1, "a")) + header)
    assert received.messages == [HeartBeat(1, "a")]
    assert [exc.problem for exc in received.refusals] == [FrameProblem.OVERSIZED]
    assert transport.aborted
    # Nothing more is read, let alone kept, from the refused connection.
    connection.data_received(b"\x00" * MAX_FRAME_BYTES + encode_message(HeartBeat(2, "a")))
    assert received.messages == [HeartBeat(1, "a")]
    assert len(received.refusals) == 1


@run_async
async def test_a_refused_frame_ends_the_connection_and_later_frames_are_ignored() -> None:
    connection, transport, received = receiving()
    garbage = b"\x00\x00\x00\x01\xc1"
    connection.data_received(encode_message(HeartBeat(1, "a")) + garbage + STREAM)
    assert received.messages == [HeartBeat(1, "a")]
    assert [exc.problem for exc in received.refusals] == [FrameProblem.UNDECODABLE]
    assert transport.aborted
    assert connection.closed
    await connection.wait_closed()
    assert isinstance(connection.reason, WireError)


# ------------------------------------------------------------------------- the handshake


def hello() -> bytes:
    return encode_handshake(Handshake(PROTOCOL_VERSION, "test", "a"))


@run_async
async def test_frames_that_arrive_with_the_handshake_are_delivered_after_it() -> None:
    connection, _ = connected()
    # The handshake and the first messages in one segment, as a fast dialler sends them.
    connection.data_received(hello() + STREAM[:-3])
    handshake = decode_handshake(await connection.read_frame())
    assert handshake.node_id == "a"
    received = Received()
    connection.receive(received.frame, received.refused)
    assert received.messages == MESSAGES[:-1]
    connection.data_received(STREAM[-3:])
    assert received.messages == MESSAGES


@run_async
async def test_frames_sent_just_before_the_peer_closed_are_still_delivered() -> None:
    connection, _ = connected()
    connection.data_received(hello() + STREAM)
    connection.eof_received()
    connection.connection_lost(None)
    assert decode_handshake(await connection.read_frame()).node_id == "a"
    received = Received()
    connection.receive(received.frame, received.refused)
    assert received.messages == MESSAGES
    assert connection.lost


@run_async
async def test_read_frame_waits_for_a_frame_split_across_calls() -> None:
    connection, _ = connected()
    frame = hello()
    reading = asyncio.ensure_future(connection.read_frame())
    for index in range(len(frame)):
        await asyncio.sleep(0)
        assert not reading.done()
        connection.data_received(frame[index : index + 1])
    assert decode_handshake(await reading).node_id == "a"


@run_async
async def test_the_handshake_stops_reading_while_more_than_a_frame_waits() -> None:
    connection, transport = connected()
    first = encode_message(HeartBeat(1, "a"))
    connection.data_received(first)
    assert transport.reading
    largest = MAX_FRAME_BYTES.to_bytes(4, "big") + b"\x00" * MAX_FRAME_BYTES
    connection.data_received(largest)
    assert not transport.reading
    assert await connection.read_frame() == first[4:]
    assert transport.reading


@run_async
async def test_an_oversized_handshake_frame_is_refused() -> None:
    connection, _ = connected()
    connection.data_received((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(WireError) as caught:
        await connection.read_frame()
    assert caught.value.problem is FrameProblem.OVERSIZED


@run_async
async def test_a_connection_closed_mid_handshake_ends_the_read() -> None:
    connection, _ = connected()
    reading = asyncio.ensure_future(connection.read_frame())
    connection.data_received(hello()[:5])
    await asyncio.sleep(0)
    connection.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        await reading


@run_async
async def test_a_send_only_connection_ends_when_the_peer_writes() -> None:
    connection, transport = connected()
    connection.send_only()
    connection.data_received(b"x")
    assert transport.aborted
    assert not connection.writable
    assert str(connection.reason) == "the peer wrote on a send-only connection"


# ------------------------------------------------------------------------- flow control


@run_async
async def test_a_connection_paused_longer_than_the_write_timeout_is_aborted() -> None:
    connection, transport = connected(write_timeout=0.01)
    connection.pause_writing()
    assert not connection.writable
    timer = connection._pause_timer
    assert timer is not None
    connection.resume_writing()
    assert connection.writable
    # Resumed in time: the timer that would have aborted the connection is gone.
    assert timer.cancelled()
    assert not transport.aborted
    connection.pause_writing()
    await eventually(lambda: transport.aborted, "the write timeout")
    await connection.wait_closed()
    assert isinstance(connection.reason, TimeoutError)


def settings(queue_size: int) -> TcpSettings:
    return TcpSettings(
        cluster_id="test",
        max_frame_bytes=MAX_FRAME_BYTES,
        queue_size=queue_size,
        connect_timeout=1.0,
        handshake_timeout=1.0,
        write_timeout=5.0,
        backoff_initial=0.01,
        backoff_max=0.1,
        send_buffer_bytes=4096,
        tls=None,
        secret=None,
    )


@run_async
async def test_sends_go_straight_out_queue_while_paused_and_flush_on_resume() -> None:
    metrics = TcpMetrics()
    link = PeerLink("a", Inbox(), settings(queue_size=3), metrics, random.Random(1))
    connection, transport = connected()
    connection.send_only()
    peer = Peer("b", ("127.0.0.1", 1))
    peer.connection = connection
    connection.on_resume = lambda: link._flush(peer)
    frames = [encode_message(HeartBeat(term, "a")) for term in range(1, 7)]

    link.send(peer, "heartbeat", frames[0])
    assert transport.written == [frames[0]]  # written in the call, nothing queued
    assert not peer.queue

    connection.pause_writing()
    for frame in frames[1:]:
        link.send(peer, "heartbeat", frame)
    # Bounded: the two oldest of five were pushed out, and counted.
    assert [frame for _, frame in peer.queue] == frames[3:]
    assert metrics.dropped_queue_full == 2
    assert transport.written == [frames[0]]

    connection.resume_writing()
    assert transport.written == [frames[0], *frames[3:]]
    assert not peer.queue
    assert metrics.sent.heartbeat == 4
    assert link.changed.is_set()


@run_async
async def test_a_flush_stops_when_flow_control_pauses_again() -> None:
    metrics = TcpMetrics()
    link = PeerLink("a", Inbox(), settings(queue_size=8), metrics, random.Random(1))
    connection, transport = connected()
    peer = Peer("b", ("127.0.0.1", 1))
    peer.connection = connection
    connection.on_resume = lambda: link._flush(peer)
    connection.pause_writing()
    frames = [encode_message(HeartBeat(term, "a")) for term in range(1, 5)]
    for frame in frames:
        link.send(peer, "heartbeat", frame)

    def write_and_pause(data: bytes | bytearray | memoryview) -> None:
        FakeTransport.write(transport, data)
        if len(transport.written) == 2:
            connection.pause_writing()

    transport.write = write_and_pause  # type: ignore[method-assign]
    connection.resume_writing()
    assert transport.written == frames[:2]
    assert [frame for _, frame in peer.queue] == frames[2:]

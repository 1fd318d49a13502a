"""Hostile input to the TCP transport on 127.0.0.1: garbage, forged handshakes and
malformed frames on a connection, and what arrives with or right before its end.

Each bad connection is refused, counted under its reason and cut off, and the transport
keeps serving everyone else; every wait polls for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import msgpack
import pytest

from almost_raft.core._messages import HeartBeat
from almost_raft.transport.tcp._handshake_frames import Handshake, encode_handshake
from almost_raft.transport.tcp._wire import PROTOCOL_VERSION, encode_message
from helpers.tcp_cluster import CLUSTER, LOCALHOST, bad_counters, cluster, run
from helpers.transport import eventually

pytestmark = pytest.mark.slow


def frame(value: object) -> bytes:
    body: bytes = msgpack.packb(value, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def hello(node_id: str = "a", cluster_id: str = CLUSTER) -> bytes:
    return encode_handshake(Handshake(PROTOCOL_VERSION, cluster_id, node_id))


BAD_INPUT: list[tuple[str, bytes, str]] = [
    ("garbage before handshake", b"\x00\x00\x00\x05hello", "bad_undecodable"),
    ("an http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_oversized"),
    ("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "bad_tls"),
    ("wrong cluster id", hello(cluster_id="other"), "handshakes_refused"),
    ("wrong protocol version", frame(["almost-raft", 99, CLUSTER, "a"]), "handshakes_refused"),
    ("unknown node id", hello("stranger"), "handshakes_refused"),
    ("own node id", hello("b"), "handshakes_refused"),
    ("message instead of handshake", encode_message(HeartBeat(1, "a")), "handshakes_refused"),
    ("garbage after handshake", hello() + b"\x00\x00\x00\x03\xc1\xc1\xc1", "bad_undecodable"),
    ("oversized frame", hello() + struct.pack(">I", 2**20), "bad_oversized"),
    ("unknown kind", hello() + frame([42, 1, "a"]), "bad_unknown_kind"),
    ("bool as term", hello() + frame([3, True, "a"]), "bad_field"),
    ("impersonation", hello() + encode_message(HeartBeat(1, "c")), "bad_impersonation"),
]


@pytest.mark.parametrize(
    ("data", "counter"), [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_refused_counted_and_cut_off(data: bytes, counter: str) -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            b = nodes["b"]
            b.set_peer_address("c", (LOCALHOST, 9))  # a known id, never dialled here
            reader, writer = await asyncio.open_connection(*b.address)
            try:
                writer.write(data)
                await writer.drain()
                assert await read_until_closed(reader) == b""
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            assert bad_counters(b.metrics) == {counter: 1}
            assert nodes.received("b") == []

            # The transport still serves everyone else.
            await nodes["a"].send("b", HeartBeat(1, "a"))
            await eventually(lambda: bool(nodes.received("b")), "a's heartbeat at b")
            assert nodes.received("b") == [HeartBeat(1, "a")]

    run(body)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the other side sent before closing (a reset counts as closing)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=5.0)
    except ConnectionResetError:
        return b""


def test_messages_that_arrive_with_the_handshake_are_delivered() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            b = nodes["b"]
            sent = [HeartBeat(term, "a") for term in range(1, 4)]
            _, writer = await asyncio.open_connection(*b.address)
            try:
                # One write, so the handshake and the messages reach b together.
                writer.write(hello() + b"".join(encode_message(m) for m in sent))
                await eventually(lambda: len(nodes.received("b")) == 3, "three heartbeats")
                assert nodes.received("b") == sent
                assert bad_counters(b.metrics) == {}
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    run(body)


def test_messages_from_a_peer_that_closed_right_after_sending_are_delivered() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            sent = [HeartBeat(term, "a") for term in range(1, 4)]
            with socket.create_connection(nodes["b"].address) as sock:
                # A leader handing over writes its last message and exits at once.
                sock.sendall(hello() + b"".join(encode_message(m) for m in sent))
            await eventually(lambda: len(nodes.received("b")) == 3, "three heartbeats")
            assert nodes.received("b") == sent

    run(body)


def test_a_silent_connection_is_refused_after_the_handshake_timeout() -> None:
    async def body() -> None:
        async with cluster("b", handshake_timeout=0.1) as nodes:
            reader, writer = await asyncio.open_connection(*nodes["b"].address)
            try:
                assert await read_until_closed(reader) == b""
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            assert bad_counters(nodes["b"].metrics) == {"handshakes_refused": 1}

    run(body)


def test_a_redialling_peer_replaces_its_old_connection_on_its_first_message() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            b = nodes["b"]
            connections = [await asyncio.open_connection(*b.address) for _ in range(3)]
            (old_reader, old), (_, bare), (_, new) = connections
            try:
                old.write(hello() + encode_message(HeartBeat(1, "a")))
                await eventually(lambda: len(nodes.received("b")) == 1, "the old connection")
                # A handshake alone, as anyone could forge, does not cut the peer off.
                bare.write(hello())
                await eventually(lambda: b.metrics.handshakes_accepted == 2, "the handshake")
                old.write(encode_message(HeartBeat(2, "a")))
                await eventually(lambda: len(nodes.received("b")) == 2, "the old connection")
                # A valid message on a new connection does: the peer has redialled.
                new.write(hello() + encode_message(HeartBeat(3, "a")))
                assert await read_until_closed(old_reader) == b""
                new.write(encode_message(HeartBeat(4, "a")))
                await eventually(lambda: len(nodes.received("b")) == 4, "the new connection")
                assert nodes.received("b") == [HeartBeat(t, "a") for t in range(1, 5)]
                assert bad_counters(b.metrics) == {}
            finally:
                for _, writer in connections:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

    run(body)

"""The shared-secret handshake: only nodes that know the secret talk, and nothing replays.

The transport tests run on 127.0.0.1 with ports picked by the kernel and poll for each
condition with a deadline; the proof and decoder tests are pure, and fuzzed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from almost_raft.core._errors import ConfigError
from almost_raft.core._messages import HeartBeat
from almost_raft.transport.tcp._auth import (
    MIN_SECRET_BYTES,
    Transcript,
    check_challenge,
    check_dialler_proof,
    read_secret_file,
)
from almost_raft.transport.tcp._handshake_frames import (
    NONCE_BYTES,
    Handshake,
    decode_challenge,
    decode_handshake,
    decode_proof,
    encode_challenge,
    encode_handshake,
    encode_proof,
)
from almost_raft.transport.tcp._transport import TcpTransport
from almost_raft.transport.tcp._wire import (
    PROTOCOL_VERSION,
    FrameProblem,
    WireError,
    encode_message,
)
from helpers.cluster import run_async
from helpers.transport import Inbox, eventually, eventually_async

CLUSTER = "secret-test"
SECRET = b"correct horse battery staple!!"
OTHER_SECRET = b"another cluster's secret value"
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.1}


@dataclasses.dataclass
class Node:
    transport: TcpTransport
    inbox: Inbox


@contextlib.asynccontextmanager
async def pair(secret_a: bytes | None, secret_b: bytes | None) -> AsyncIterator[dict[str, Node]]:
    """Nodes a and b on free ports, each knowing the other's address."""
    nodes: dict[str, Node] = {}
    try:
        for node_id, secret in (("a", secret_a), ("b", secret_b)):
            transport = TcpTransport(
                listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER, secret=secret, **FAST
            )
            nodes[node_id] = Node(transport, Inbox())
            await transport.start(node_id, nodes[node_id].inbox)
        nodes["a"].transport.set_peer_address("b", nodes["b"].transport.address)
        nodes["b"].transport.set_peer_address("a", nodes["a"].transport.address)
        yield nodes
    finally:
        for node in nodes.values():
            await node.transport.close()


@run_async
async def test_nodes_with_the_same_secret_talk() -> None:
    async with pair(SECRET, SECRET) as nodes:
        await nodes["a"].transport.send("b", HeartBeat(1, "a"))
        await nodes["b"].transport.send("a", HeartBeat(2, "b"))
        await eventually(lambda: nodes["b"].inbox.messages == [HeartBeat(1, "a")], "a -> b")
        await eventually(lambda: nodes["a"].inbox.messages == [HeartBeat(2, "b")], "b -> a")
        for node in nodes.values():
            assert node.transport.metrics.bad_auth == 0
            assert node.transport.metrics.handshakes_accepted == 1


@pytest.mark.parametrize(
    ("secret_a", "secret_b"),
    [
        pytest.param(SECRET, OTHER_SECRET, id="different-secrets"),
        pytest.param(None, SECRET, id="dialler-without-secret"),
        pytest.param(SECRET, None, id="acceptor-without-secret"),
    ],
)
@run_async
async def test_a_node_without_the_secret_is_refused_and_counted(
    secret_a: bytes | None, secret_b: bytes | None
) -> None:
    async with pair(secret_a, secret_b) as nodes:
        a, b = nodes["a"].transport, nodes["b"].transport

        async def refused() -> bool:
            # Each side's dial is refused: by the acceptor, or by the dialler that got a
            # wrong proof back. Either way one of the two counts it.
            await a.send("b", HeartBeat(1, "a"))
            await b.send("a", HeartBeat(1, "b"))
            return a.metrics.bad_auth + b.metrics.bad_auth >= 2

        await eventually_async(refused, "refusals to be counted")
        assert nodes["a"].inbox.messages == []
        assert nodes["b"].inbox.messages == []
        assert a.metrics.handshakes_accepted == b.metrics.handshakes_accepted == 0


@run_async
async def test_the_node_without_the_secret_says_what_it_must_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="almost_raft.tcp")
    async with pair(None, SECRET) as nodes:
        a, b = nodes["a"].transport, nodes["b"].transport

        def explained() -> bool:
            mine = [r.getMessage() for r in caplog.records if r.getMessage().startswith("a: ")]
            return any("set secret_file in this node's cluster file" in m for m in mine) and any(
                "b closes this node's connections as soon as they are made" in m for m in mine
            )

        async def refused() -> bool:
            await a.send("b", HeartBeat(1, "a"))
            await b.send("a", HeartBeat(1, "b"))
            return explained()

        await eventually_async(refused, "a to explain the refusals in its own log")

        # Redials go on (with backoff), but are not a stream of "connected"/"lost" lines:
        # after the few a dying peer's backlog could explain, they are logged at DEBUG.
        def dials() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith("a: connected to b")]

        await eventually(
            lambda: any(r.levelno < logging.INFO for r in dials()),
            "a redial of b logged at DEBUG",
            timeout=15.0,
        )
        shown = [r for r in dials() if r.levelno >= logging.INFO]
        assert len(dials()) > len(shown)
        assert len(shown) <= 5


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(length)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Whether the peer closes the connection within 5 s (after whatever it writes)."""
    try:
        async with asyncio.timeout(5.0):
            await reader.read()
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@run_async
async def test_a_recorded_handshake_cannot_be_replayed() -> None:
    async with pair(SECRET, SECRET) as nodes:
        b = nodes["b"].transport
        handshake = Handshake(PROTOCOL_VERSION, CLUSTER, "a", b"\x01" * NONCE_BYTES)

        # A genuine dialler, recorded: handshake, proof, one message. It gets through.
        reader, writer = await asyncio.open_connection(*b.address)
        writer.write(encode_handshake(handshake))
        transcript = check_challenge(SECRET, handshake, "b", await read_frame(reader))
        recorded = encode_handshake(handshake) + encode_proof(transcript.proof(SECRET, "dialler"))
        recorded += encode_message(HeartBeat(7, "a"))
        writer.write(recorded[len(encode_handshake(handshake)) :])
        await eventually(lambda: nodes["b"].inbox.messages == [HeartBeat(7, "a")], "the genuine")
        writer.close()
        await writer.wait_closed()

        # The same bytes on a new connection: b's nonce is new, so the proof is wrong.
        before = b.metrics.bad_auth
        reader, writer = await asyncio.open_connection(*b.address)
        writer.write(recorded)
        assert await closed_by_peer(reader)
        writer.close()
        await eventually(lambda: b.metrics.bad_auth == before + 1, "the replay to be counted")
        assert nodes["b"].inbox.messages == [HeartBeat(7, "a")]


@run_async
async def test_a_listener_without_the_secret_learns_no_proof() -> None:
    """A dialler sends nothing but its handshake to an acceptor that cannot prove the secret."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    transport = TcpTransport(
        listen=("127.0.0.1", 0),
        peers={"b": listener.getsockname()},
        cluster_id=CLUSTER,
        secret=SECRET,
        **FAST,
    )
    await transport.start("a", Inbox())
    loop = asyncio.get_running_loop()
    try:
        await transport.send("b", HeartBeat(1, "a"))
        conn, _ = await loop.sock_accept(listener)
        with conn:
            reader, writer = await asyncio.open_connection(sock=conn)
            handshake = decode_handshake(await read_frame(reader))
            assert handshake.nonce is not None
            # A forged answer: a nonce and a proof made without the secret.
            forged = Transcript(CLUSTER, "a", "b", handshake.nonce, b"\x02" * NONCE_BYTES)
            writer.write(
                encode_challenge(b"\x02" * NONCE_BYTES, forged.proof(OTHER_SECRET, "acceptor"))
            )
            assert await closed_by_peer(reader)
            writer.close()
        await eventually(lambda: transport.metrics.bad_auth >= 1, "the forged proof counted")
        assert transport.metrics.sent.total == 0
    finally:
        await transport.close()
        listener.close()


@pytest.mark.parametrize("secret", [b"", b"short", "a str, not bytes" * 4, 12345])
def test_a_weak_or_mistyped_secret_names_the_field(secret: object) -> None:
    with pytest.raises(ConfigError) as info:
        TcpTransport(listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER, secret=secret)  # type: ignore[arg-type]
    assert info.value.field == "secret"
    assert str(MIN_SECRET_BYTES) in info.value.fix


def test_a_secret_file_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    path.write_bytes(b"  " + SECRET + b"\n")
    assert read_secret_file("secret_file", path) == SECRET
    path.write_bytes(b"tiny\n")
    with pytest.raises(ConfigError, match="secret_file") as info:
        read_secret_file("secret_file", path)
    assert b"tiny" not in str(info.value).encode()
    with pytest.raises(ConfigError, match="no such file"):
        read_secret_file("secret_file", tmp_path / "missing")


# ---------------------------------------------------------------------------- proofs

TRANSCRIPT = Transcript(CLUSTER, "a", "b", b"\x01" * NONCE_BYTES, b"\x02" * NONCE_BYTES)


def test_a_proof_covers_every_field_and_the_role() -> None:
    base = TRANSCRIPT.proof(SECRET, "dialler")
    variants = [
        TRANSCRIPT.proof(SECRET, "acceptor"),
        TRANSCRIPT.proof(OTHER_SECRET, "dialler"),
        dataclasses.replace(TRANSCRIPT, cluster_id="x").proof(SECRET, "dialler"),
        dataclasses.replace(TRANSCRIPT, dialler_id="c").proof(SECRET, "dialler"),
        dataclasses.replace(TRANSCRIPT, acceptor_id="c").proof(SECRET, "dialler"),
        dataclasses.replace(TRANSCRIPT, dialler_nonce=b"\x03" * NONCE_BYTES).proof(
            SECRET, "dialler"
        ),
        dataclasses.replace(TRANSCRIPT, acceptor_nonce=b"\x03" * NONCE_BYTES).proof(
            SECRET, "dialler"
        ),
        dataclasses.replace(TRANSCRIPT, version=PROTOCOL_VERSION + 1).proof(SECRET, "dialler"),
        # Length prefixes: moving a character from one id to the next changes the proof.
        dataclasses.replace(TRANSCRIPT, dialler_id="ab", acceptor_id="").proof(SECRET, "dialler"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    check_dialler_proof(SECRET, TRANSCRIPT, encode_proof(base)[4:])


def body(frame: bytes) -> bytes:
    return frame[4:]


VALID_HANDSHAKE = body(encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER, "a", b"\x01" * 32)))
VALID_PROOF = body(encode_proof(TRANSCRIPT.proof(SECRET, "dialler")))
VALID_CHALLENGE = body(encode_challenge(b"\x02" * 32, TRANSCRIPT.proof(SECRET, "acceptor")))


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes flipped, inserted, deleted or cut off."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        elif action == "delete" and data:
            del data[position]
        else:
            del data[position:]
    return bytes(data)


def handshake_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), mutated(VALID_HANDSHAKE))


def proof_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=80),
        mutated(VALID_PROOF),
        mutated(VALID_CHALLENGE),
        # Well-formed, but made with another key or for another connection.
        st.binary(min_size=32, max_size=32).map(lambda b: body(encode_proof(b))),
        st.just(body(encode_proof(TRANSCRIPT.proof(OTHER_SECRET, "dialler")))),
        st.just(body(encode_proof(TRANSCRIPT.proof(SECRET, "acceptor")))),
    )


@settings(max_examples=400, deadline=None)
@given(handshake_bodies())
def test_the_handshake_decoder_never_raises_anything_but_wire_error(data: bytes) -> None:
    refusals = {FrameProblem.HANDSHAKE_REFUSED, FrameProblem.OVERSIZED, FrameProblem.UNDECODABLE}
    problem: FrameProblem | None = None
    try:
        handshake = decode_handshake(data)
    except WireError as exc:
        problem = exc.problem
    else:
        assert handshake.nonce is None or len(handshake.nonce) == NONCE_BYTES
    assert problem is None or problem in refusals


@settings(max_examples=400, deadline=None)
@given(proof_bodies())
def test_no_proof_but_the_real_one_authenticates_a_dialler(data: bytes) -> None:
    if data == VALID_PROOF:  # a mutation can undo itself
        return
    with pytest.raises(WireError) as info:
        check_dialler_proof(SECRET, TRANSCRIPT, data)
    assert info.value.problem is FrameProblem.AUTH
    # The decoders alone raise only WireError, whatever the bytes.
    for decode in (decode_proof, decode_challenge):
        with contextlib.suppress(WireError):
            decode(data)


@settings(max_examples=400, deadline=None)
@given(proof_bodies())
def test_no_challenge_but_the_real_one_authenticates_an_acceptor(data: bytes) -> None:
    handshake = Handshake(PROTOCOL_VERSION, CLUSTER, "a", TRANSCRIPT.dialler_nonce)
    if data == VALID_CHALLENGE:  # a mutation can undo itself
        return
    with pytest.raises(WireError) as info:
        check_challenge(SECRET, handshake, "b", data)
    assert info.value.problem is FrameProblem.AUTH


def test_the_real_challenge_authenticates_the_acceptor_it_names() -> None:
    handshake = Handshake(PROTOCOL_VERSION, CLUSTER, "a", TRANSCRIPT.dialler_nonce)
    assert check_challenge(SECRET, handshake, "b", VALID_CHALLENGE) == TRANSCRIPT
    with pytest.raises(WireError, match="as 'c'"):
        check_challenge(SECRET, handshake, "c", VALID_CHALLENGE)
    with pytest.raises(WireError):
        check_challenge(OTHER_SECRET, handshake, "b", VALID_CHALLENGE)


@run_async
async def test_close_while_waiting_for_the_acceptors_challenge_leaves_no_socket() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    transport = TcpTransport(
        listen=("127.0.0.1", 0),
        peers={"b": listener.getsockname()},
        cluster_id=CLUSTER,
        secret=SECRET,
        handshake_timeout=60.0,
    )
    await transport.start("a", Inbox())
    loop = asyncio.get_running_loop()
    try:
        await transport.send("b", HeartBeat(1, "a"))
        conn, _ = await loop.sock_accept(listener)
        with conn:
            reader, writer = await asyncio.open_connection(sock=conn)
            decode_handshake(await read_frame(reader))
            # The acceptor never answers; close() must not wait for it, nor leak the socket.
            started = loop.time()
            await transport.close()
            assert loop.time() - started < 2.0
            assert await closed_by_peer(reader)
            writer.close()
    finally:
        await transport.close()
        listener.close()

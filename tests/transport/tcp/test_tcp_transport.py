"""The TCP transport on 127.0.0.1: delivery, reconnection, slow peers, close, settings.

Hostile input has a file of its own (``test_tcp_hostile_input.py``).

Every port is picked by the kernel (port 0) and every wait polls for a condition with a
deadline, so the tests neither collide with other processes nor depend on timing luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import sys
from typing import Any

import pytest

from almost_raft.core._errors import ConfigError
from almost_raft.core._messages import (
    HeartBeat,
    HeartBeatResponse,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
)
from almost_raft.transport.tcp._redial import backoff_delay
from almost_raft.transport.tcp._transport import TcpTransport
from helpers.tcp_cluster import (
    CLUSTER,
    FAST,
    LOCALHOST,
    OLD_ENOUGH,
    Cluster,
    address_of,
    bad_counters,
    cluster,
    run,
    silent_listener,
)
from helpers.transport import Inbox, eventually, eventually_async

pytestmark = pytest.mark.slow

# ------------------------------------------------------------------------- delivery

EVERY_KIND: list[PeerMessage] = [
    RequestVote(3, "a", pre_vote=True),
    RequestVote(4, "a"),
    RequestVoteResponse(4, "a", granted=True),
    RequestVoteResponse(5, "a", granted=False, pre_vote=True),
    HeartBeat(6, "a"),
    HeartBeatResponse(7, "a"),
]


def test_every_message_kind_arrives_in_order_and_is_counted() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            for message in EVERY_KIND:
                await nodes["a"].send("b", message)
            await eventually(lambda: len(nodes.received("b")) == 6, "six messages at b")
            assert nodes.received("b") == EVERY_KIND
            for metrics in (nodes["a"].metrics.sent, nodes["b"].metrics.received):
                assert metrics.request_vote == 2
                assert metrics.request_vote_response == 2
                assert metrics.heartbeat == 1
                assert metrics.heartbeat_response == 1
            assert nodes["a"].metrics.connects == 1
            assert nodes["b"].metrics.accepted == 1

            # Answers travel on b's own connection to a.
            await nodes["b"].send("a", HeartBeatResponse(6, "b"))
            await eventually(lambda: len(nodes.received("a")) == 1, "the answer at a")
            assert nodes.received("a") == [HeartBeatResponse(6, "b")]
            assert nodes["b"].metrics.connects == 1
            assert nodes["a"].metrics.accepted == 1
            assert bad_counters(nodes["a"].metrics) == bad_counters(nodes["b"].metrics) == {}

    run(body)


def test_send_only_queues_and_misuse_is_reported() -> None:
    async def body() -> None:
        transport = TcpTransport(listen=(LOCALHOST, 0), peers={}, cluster_id=CLUSTER)
        with pytest.raises(RuntimeError, match="start"):
            await transport.send("b", HeartBeat(1, "a"))
        await transport.start("a", Inbox())
        try:
            with pytest.raises(ValueError, match="cannot send a message from 'b'"):
                await transport.send("c", HeartBeat(1, "b"))
            await transport.send("nobody", HeartBeat(1, "a"))
            assert transport.metrics.dropped_unknown_peer == 1
            with pytest.raises(RuntimeError, match="already started"):
                await transport.start("a", Inbox())
        finally:
            await transport.close()
        await transport.send("nobody", HeartBeat(1, "a"))
        assert transport.metrics.dropped_not_connected == 1
        with pytest.raises(RuntimeError, match="not listening"):
            transport.address  # noqa: B018

    run(body)


# ------------------------------------------------------------------------- reconnection


def test_reconnects_after_the_peer_restarts_on_the_same_port() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            a = nodes["a"]
            await a.send("b", HeartBeat(1, "a"))
            await eventually(lambda: len(nodes.received("b")) == 1, "the first heartbeat")
            b_address = nodes["b"].address
            await nodes["b"].close()
            # a learns that the connection closed without having to write to it.
            await eventually(lambda: a.metrics.disconnects == 1, "a to notice b is gone")

            # Nothing listens on b's port now: a counts refusals, not timeouts.
            async def dial_refused() -> bool:
                await a.send("b", HeartBeat(2, "a"))
                return a.metrics.connect_refused > 0

            await eventually_async(dial_refused, "a refused dial")
            assert a.metrics.connect_timeouts == 0
            # The redial right after the break was refused: b's process is gone.
            assert nodes.inboxes["a"].unreachable == ["b"]

            restarted = await nodes.start("b", listen=b_address)
            assert restarted.address == b_address

            async def delivered_again() -> bool:
                await a.send("b", HeartBeat(3, "a"))
                return bool(nodes.received("b"))

            await eventually_async(delivered_again, "a heartbeat at the restarted b")
            assert nodes.inboxes["a"].unreachable == ["b"]
            # What was queued while a waited to redial arrives too.
            assert set(nodes.received("b")) <= {HeartBeat(2, "a"), HeartBeat(3, "a")}
            assert a.metrics.connects == 2

    run(body)


def test_a_peer_that_closes_is_reported_disconnected_before_it_is_reported_gone() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            a, b = nodes["a"], nodes["b"]
            await a.send("b", HeartBeat(1, "a"))
            await b.send("a", HeartBeatResponse(1, "b"))
            await eventually(lambda: len(nodes.received("a")) == 1, "b's answer at a")
            # Both connections carried a message already: after this, their end is a break.
            await asyncio.sleep(OLD_ENOUGH)
            await b.close()
            inbox = nodes.inboxes["a"]
            await eventually(lambda: inbox.unreachable == ["b"], "the refused redial")
            # Both of a's connections with b ended from b's side: each is told, and
            # before the refusal that a redial brought.
            assert inbox.disconnected == ["b", "b"]

    run(body)


def test_connections_this_node_ends_are_not_reported_disconnected() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            a, b = nodes["a"], nodes["b"]
            await a.send("b", HeartBeat(1, "a"))
            await b.send("a", HeartBeatResponse(1, "b"))
            await eventually(lambda: len(nodes.received("a")) == 1, "b's answer at a")
            # Old enough that the end of b's connection to a is a break, which b tells.
            await asyncio.sleep(OLD_ENOUGH)
            # a itself gives up its connections with b, as its answer watch would.
            assert a._inbound is not None
            for connection in list(a._inbound.connections):
                connection.abort(TimeoutError("no answer"))
            peer = a._peers["b"]
            assert peer.connection is not None
            peer.connection.abort(TimeoutError("no answer"))
            await eventually(lambda: a.metrics.connects == 2, "a to redial b")
            await eventually(lambda: b.metrics.connects == 2, "b to redial a")
            # b saw its connections end from a's side; a saw only its own doing.
            assert nodes.inboxes["a"].disconnected == []
            assert nodes.inboxes["b"].disconnected == ["a", "a"]
            assert nodes.inboxes["a"].unreachable == nodes.inboxes["b"].unreachable == []

    run(body)


async def refuse_while_sending(nodes: Cluster) -> None:
    """Connect a and b both ways; then b's listener breaks while b, and its connection to
    a, live on, a's connection to b ends, and a's probe is refused."""
    a, b = nodes["a"], nodes["b"]
    await a.send("b", HeartBeat(1, "a"))
    await b.send("a", HeartBeatResponse(1, "b"))
    await eventually(lambda: len(nodes.received("b")) == 1, "a's heartbeat at b")
    await eventually(lambda: len(nodes.received("a")) == 1, "b's answer at a")
    assert b._listener is not None
    assert b._inbound is not None
    b._listener.close()
    b._inbound.remove_peer("a")
    await eventually(lambda: a.metrics.connect_refused > 0, "a refused probe")


def test_a_peer_that_refuses_but_still_sends_is_not_reported_gone() -> None:
    async def body() -> None:
        # A refusal waits answer_timeout for b's own connection to end; a short one keeps
        # the wait for its verdict short.
        async with cluster("a", "b", answer_timeout=0.2) as nodes:
            a, b = nodes["a"], nodes["b"]
            await refuse_while_sending(nodes)
            # The refused probe's verdict comes before the dialler goes on to the next dial.
            await eventually(lambda: a.metrics.connect_refused >= 2, "the dial after the probe")
            assert nodes.inboxes["a"].unreachable == []
            # b still reaches a: it is alive, which is why a refusal alone is no evidence.
            await b.send("a", HeartBeatResponse(2, "b"))
            await eventually(lambda: len(nodes.received("a")) == 2, "b's next message")

    run(body)


def test_a_refusal_before_the_peers_own_connection_ends_is_evidence_once_it_ends() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            b = nodes["b"]
            # b dies, but the end of its connection to a comes later than the refusal of
            # a's probe, as when the FIN is lost and sent again a retransmission later.
            await refuse_while_sending(nodes)
            # The verdict waits for b's connection to end, and nothing happens meanwhile to
            # mark a moment: a fixed wait, longer than the 20 ms a refusal used to wait for
            # the other direction and well inside the answer_timeout (1 s) it waits now.
            await asyncio.sleep(0.1)
            assert nodes.inboxes["a"].unreachable == []
            await b.close()
            await eventually(lambda: nodes.inboxes["a"].unreachable == ["b"], "the evidence")

    run(body)


def test_a_vote_request_left_unanswered_does_not_end_the_connection() -> None:
    async def body() -> None:
        async with cluster("a", "b", "c", answer_timeout=0.2) as nodes:
            a = nodes["a"]
            await eventually(lambda: a.metrics.connects == 2, "a's connections")
            # b holds a's pre-vote requests, as a voter in its leader lease does: no answer.
            for _ in range(5):
                await a.send("b", RequestVote(2, "a", pre_vote=True))
            # c leaves a heartbeat sent after them unanswered: a gives that connection up
            # one answer_timeout later, just after a watch armed by the first request would
            # have given up b's.
            await a.send("c", HeartBeat(2, "a"))
            await eventually(lambda: nodes.inboxes["c"].disconnected == ["a"], "c given up")
            for _ in range(5):
                await a.send("b", RequestVote(2, "a", pre_vote=True))
            await eventually(lambda: len(nodes.received("b")) == 10, "every request at b")
            assert a.metrics.unanswered == 1, "a gave up b's connection as well as c's"
            assert nodes.inboxes["b"].disconnected == []
            # One connection from a, one from c: a never had to redial b.
            assert nodes["b"].metrics.handshakes_accepted == 2

    run(body)


def test_a_dial_without_answer_counts_as_a_timeout_not_a_refusal() -> None:
    async def body() -> None:
        # A listener with a full accept queue drops further SYNs: the dial hangs.
        full = silent_listener(backlog=0)
        filler = socket.create_connection(address_of(full))
        try:
            async with cluster("a", connect_timeout=0.2) as nodes:
                a = nodes["a"]
                a.set_peer_address("z", address_of(full))
                await a.send("z", HeartBeat(1, "a"))
                await eventually(lambda: a.metrics.connect_timeouts >= 1, "a dial timeout")
                assert a.metrics.connect_refused == 0
                assert a.metrics.connects == 0
        finally:
            filler.close()
            full.close()

    run(body)


def test_a_moved_peer_is_redialled_at_its_new_address() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            a, b_address = nodes["a"], nodes["b"].address
            vacant = socket.socket()
            vacant.bind((LOCALHOST, 0))
            wrong = address_of(vacant)
            vacant.close()
            a.set_peer_address("b", wrong)
            await a.send("b", HeartBeat(1, "a"))
            await eventually(lambda: a.metrics.connect_refused >= 1, "a refused dial")
            a.set_peer_address("b", b_address)
            await a.send("b", HeartBeat(2, "a"))
            await eventually(lambda: bool(nodes.received("b")), "the heartbeat at b")
            assert nodes.received("b") == [HeartBeat(2, "a")]
            assert a.peer_addresses == {"b": b_address}

    run(body)


def test_only_configured_peers_may_connect() -> None:
    async def body() -> None:
        async with cluster() as nodes:
            a = await nodes.start("a")
            b = TcpTransport(
                listen=(LOCALHOST, 0), peers={"a": a.address}, cluster_id=CLUSTER, **FAST
            )
            await b.start("b", Inbox())
            try:
                # a does not know b yet: b's handshakes are refused.
                await b.send("a", HeartBeat(1, "b"))
                await eventually(lambda: a.metrics.handshakes_refused >= 1, "a refusal")
                assert nodes.received("a") == []

                a.set_peer_address("b", b.address)

                async def delivered() -> bool:
                    await b.send("a", HeartBeat(2, "b"))
                    return bool(nodes.received("a"))

                await eventually_async(delivered, "b's heartbeat at a")
                assert set(nodes.received("a")) == {HeartBeat(2, "b")}

                # Removing b closes its connection and refuses it again.
                refusals = a.metrics.handshakes_refused
                a.remove_peer("b")
                a.remove_peer("b")
                assert a.peer_addresses == {}
                await eventually(lambda: b.metrics.disconnects >= 1, "b's connection closed")

                async def refused_again() -> bool:
                    await b.send("a", HeartBeat(3, "b"))
                    return a.metrics.handshakes_refused > refusals

                await eventually_async(refused_again, "a refusal after removal")
                assert HeartBeat(3, "b") not in nodes.received("a")
                await a.send("b", HeartBeat(1, "a"))
                assert a.metrics.dropped_unknown_peer == 1
            finally:
                await b.close()

    run(body)


# ------------------------------------------------------------------------- slow peers


async def fill_until_blocked(transport: TcpTransport, peer: str, queue_size: int) -> None:
    """Send to ``peer`` until its connection stops taking data and its queue is full."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    term = 0
    while True:
        written = transport.metrics.sent.heartbeat
        for _ in range(200):
            term += 1
            await transport.send(peer, HeartBeat(term, "a"))
            assert transport.queued(peer) <= queue_size
            await asyncio.sleep(0)  # the sender's turn to write, until it cannot
        # asyncio pauses the writer whenever the kernel's buffer is full for a moment, and
        # loopback may still move that buffer on into the peer's: no event tells when the
        # peer's window has shut, so writes stopped for a whole round and this long more
        # are taken as stopped for good.
        await asyncio.sleep(0.02)
        if transport.metrics.sent.heartbeat == written and transport.queued(peer) == queue_size:
            return
        assert loop.time() < deadline, "the silent peer never stopped taking data"


def test_a_peer_that_never_reads_holds_up_nobody() -> None:
    async def body() -> None:
        silent = silent_listener()
        try:
            async with cluster("a", "b", queue_size=8, send_buffer_bytes=4096) as nodes:
                a = nodes["a"]
                a.set_peer_address("silent", address_of(silent))
                await fill_until_blocked(a, "silent", queue_size=8)
                assert a.metrics.dropped_queue_full > 0
                # Kernel and asyncio buffers stay small: a few thousand frames at most.
                assert a.metrics.sent.heartbeat < 10_000

                # b is served as if nothing were wrong.
                for term in range(1, 4):
                    await a.send("b", HeartBeat(term, "a"))
                await eventually(lambda: len(nodes.received("b")) == 3, "three heartbeats at b")
                assert nodes.received("b") == [HeartBeat(t, "a") for t in range(1, 4)]

                # The silent peer's queue never grows past its bound.
                for term in range(1000):
                    await a.send("silent", HeartBeat(term, "a"))
                assert a.queued("silent") == 8
        finally:
            silent.close()

    run(body)


def test_a_peer_that_stops_reading_is_cut_off_and_redialled() -> None:
    async def body() -> None:
        silent = silent_listener()
        try:
            options = {"queue_size": 8, "send_buffer_bytes": 4096, "write_timeout": 0.2}
            async with cluster("a", **options) as nodes:
                a = nodes["a"]
                a.set_peer_address("silent", address_of(silent))
                await fill_until_blocked(a, "silent", queue_size=8)
                await eventually(lambda: a.metrics.disconnects >= 1, "the write timeout")
                await eventually(lambda: a.metrics.connects >= 2, "a redial")
        finally:
            silent.close()

    run(body)


# ------------------------------------------------------------------------- close


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_close_leaves_no_task_and_no_socket() -> None:
    async def body() -> None:
        baseline_tasks = asyncio.all_tasks()
        baseline_fds = open_descriptors()
        silent = silent_listener()
        nodes = Cluster()
        for node_id in ("a", "b", "c"):
            await nodes.start(node_id, queue_size=8, send_buffer_bytes=4096)
        a = nodes["a"]
        a.set_peer_address("silent", address_of(silent))
        for sender in ("a", "b", "c"):
            for receiver in ("a", "b", "c"):
                if sender != receiver:
                    await nodes[sender].send(receiver, HeartBeat(1, sender))
        await eventually(lambda: all(len(nodes.received(n)) == 2 for n in "abc"), "every heartbeat")
        # Mid-handshake and stuck connections must go too.
        _, idle_writer = await asyncio.open_connection(*a.address)
        await eventually(lambda: a.metrics.accepted == 3, "the idle connection")
        await fill_until_blocked(a, "silent", queue_size=8)

        await nodes.close()
        await nodes.close()
        assert asyncio.all_tasks() == baseline_tasks
        idle_writer.close()
        with contextlib.suppress(OSError):
            await idle_writer.wait_closed()
        silent.close()
        assert open_descriptors() == baseline_fds
        assert a.metrics.dropped_not_connected >= 8

    run(body)


# ------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"listen": ("127.0.0.1", -1)}, "listen"),
        ({"listen": "127.0.0.1:7000"}, "listen"),
        ({"peers": {"b": ("127.0.0.1", 0)}}, "peers['b']"),
        ({"peers": {"": ("127.0.0.1", 7000)}}, "peers"),
        ({"peers": [("b", ("127.0.0.1", 7000))]}, "peers"),
        ({"cluster_id": ""}, "cluster_id"),
        ({"max_frame_bytes": 100}, "max_frame_bytes"),
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": True}, "queue_size"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"write_timeout": float("nan")}, "write_timeout"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "backoff_max"),
        ({"send_buffer_bytes": 10}, "send_buffer_bytes"),
        ({"answer_timeout": 0}, "answer_timeout"),
        ({"answer_timeout": float("inf")}, "answer_timeout"),
    ],
)
def test_bad_settings_name_the_field(options: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {
        "listen": (LOCALHOST, 0),
        "peers": {},
        "cluster_id": CLUSTER,
    } | options
    with pytest.raises(ConfigError) as caught:
        TcpTransport(**arguments)
    assert caught.value.field == field


def test_a_node_id_the_wire_cannot_carry_is_refused_at_start() -> None:
    async def body() -> None:
        transport = TcpTransport(listen=(LOCALHOST, 0), peers={}, cluster_id=CLUSTER)
        with pytest.raises(ConfigError) as caught:
            await transport.start("a\ud800", Inbox())
        assert caught.value.field == "node_id"
        await transport.close()

    run(body)


def test_missing_msgpack_is_reported_when_the_transport_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ImportError, match="pip install msgpack"):
        TcpTransport(listen=(LOCALHOST, 0), peers={}, cluster_id=CLUSTER)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_closing_while_a_peer_dials_leaks_no_socket() -> None:
    async def body() -> None:
        baseline_fds = open_descriptors()
        for attempt in range(40):
            transport = TcpTransport(listen=(LOCALHOST, 0), peers={}, cluster_id=CLUSTER)
            await transport.start("b", Inbox())
            dialler = socket.socket()
            dialler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                dialler.connect(transport.address)
            # Close at every point of the accept: before it, between the accept and the
            # connection's first step, and after.
            for _ in range(attempt % 5):
                await asyncio.sleep(0)
            await transport.close()
            dialler.close()
        gc.collect()  # an orphaned socket would warn here, failing the test
        assert open_descriptors() == baseline_fds

    run(body)


def test_redial_backoff_doubles_with_seeded_jitter_up_to_the_cap() -> None:
    def delays(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff_delay(failures, 0.1, 1.0, rng) for failures in (1, 2, 3, 4, 5, 6, 10**6)]

    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for delay, ceiling in zip(delays(7), ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert delays(7) == delays(7)
    assert delays(7) != delays(8)


def test_a_connection_blip_is_no_evidence_of_a_dead_peer() -> None:
    async def body() -> None:
        async with cluster("a", "b") as nodes:
            a = nodes["a"]
            await a.send("b", HeartBeat(1, "a"))
            await eventually(lambda: len(nodes.received("b")) == 1, "the first heartbeat")
            # b drops its side of the connection but keeps listening: a blip, not a death.
            inbound = nodes["b"]._inbound
            assert inbound is not None
            for connection in list(inbound.connections):
                connection.abort()
            await eventually(lambda: a.metrics.connects == 2, "a to reconnect at once")
            assert nodes.inboxes["a"].unreachable == []

    run(body)


def test_every_peer_is_dialled_at_start_before_anything_is_sent() -> None:
    async def body() -> None:
        async with cluster("a", "b", "c") as nodes:
            # Followers exchange nothing while a leader is up, yet the first vote request
            # between them must not wait for a connect and a handshake.
            await eventually(
                lambda: all(nodes[node].metrics.connects == 2 for node in "abc"),
                "every node connected to both others",
            )
            assert all(not nodes.received(node) for node in "abc")

    run(body)


def test_a_probe_reset_by_a_dying_listener_is_probed_again_at_once() -> None:
    async def body() -> None:
        dying = False
        held: list[asyncio.StreamWriter] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not dying:
                held.append(writer)
                return
            # The process is being killed: its listening socket completed this connect
            # from the backlog, and now everything goes.
            server.close()
            writer.transport.abort()

        server = await asyncio.start_server(accept, LOCALHOST, 0)
        host, port = server.sockets[0].getsockname()[:2]
        loop = asyncio.get_running_loop()
        # A backoff (half of this at least) would show; aging a connection past twice it
        # takes a second.
        backoff_initial = 0.5
        async with cluster("a", backoff_initial=backoff_initial, backoff_max=10.0) as nodes:
            a = nodes["a"]
            a.set_peer_address("z", (host, port))
            await eventually(lambda: a.metrics.connects == 1 and len(held) == 1, "a connected")
            # Age the connection past twice backoff_initial, so that its end counts as a
            # break (probed at once), not as a connection refused on arrival.
            await asyncio.sleep(2 * backoff_initial)
            dying = True
            broken_at = loop.time()
            held[0].transport.abort()
            await eventually(lambda: nodes.inboxes["a"].unreachable == ["z"], "the refusal")
            # A probe that waited a backoff after the reset would take half of
            # backoff_initial at least.
            took = loop.time() - broken_at
            assert took < backoff_initial / 2, f"reported {took:.2f} s after the reset"
            # The original connection and the probe the dying listener reset.
            assert a.metrics.connects == 2
            assert a.metrics.connect_refused == 1
        server.close()
        await server.wait_closed()

    run(body)

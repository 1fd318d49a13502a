"""When a connection is given up and redialled: the pure policy, and one real socket."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import socket
import subprocess

import pytest

from almost_raft.core._messages import HeartBeat, HeartBeatResponse
from almost_raft.transport.tcp._redial import (
    MIN_DIAL_SPACING,
    QUICK_PROBES,
    AnswerWatch,
    Verdict,
    after_connection,
    dial_spacing,
    next_connect_estimate,
)
from almost_raft.transport.tcp._transport import TcpTransport
from helpers.tcp_pair import two_nodes
from helpers.transport import Inbox, eventually

LOCALHOST = "127.0.0.1"
BACKOFF = {"backoff_initial": 0.05, "backoff_max": 1.0}


# ------------------------------------------------------------------ after_connection


def test_a_young_probe_is_probed_again_at_once_a_few_times_then_backs_off() -> None:
    failures, quick = 0, 0
    for _ in range(QUICK_PROBES):
        redial = after_connection(failures, quick, lasted=0.001, probe=True, **BACKOFF)
        assert not redial.backoff
        failures, quick = redial.failures, redial.quick_probes
    redial = after_connection(failures, quick, lasted=0.001, probe=True, **BACKOFF)
    assert redial.backoff
    assert (redial.failures, redial.quick_probes) == (1, 0)


def test_a_connection_that_ended_at_once_without_a_probe_backs_off_more_each_time() -> None:
    first = after_connection(0, 0, lasted=0.01, probe=False, **BACKOFF)
    second = after_connection(first.failures, 0, lasted=0.01, probe=False, **BACKOFF)
    assert first.backoff
    assert second.backoff
    assert (first.failures, second.failures) == (1, 2)


def test_a_connection_that_lasted_is_redialled_at_once_and_resets_the_failures() -> None:
    healthy = after_connection(5, 0, lasted=1.0, probe=False, **BACKOFF)
    assert (healthy.failures, healthy.backoff) == (0, False)
    # Between young and healthy: the redial is the probe, so it never waits.
    middling = after_connection(5, 0, lasted=0.5, probe=False, **BACKOFF)
    assert (middling.failures, middling.backoff) == (6, False)


# ------------------------------------------------------------------ dial_spacing


def test_a_dials_attempts_follow_the_measured_connect_time_within_bounds() -> None:
    # Before any connect, and on a fast network, the floor.
    assert dial_spacing(None, connect_timeout=0.6) == MIN_DIAL_SPACING
    assert dial_spacing(0.0002, connect_timeout=0.6) == MIN_DIAL_SPACING
    # A slow link: twice its connect time, so a merely slow SYN is not doubled at once.
    assert dial_spacing(0.12, connect_timeout=0.6) == pytest.approx(0.24)
    # Never more than one attempt per connect_timeout.
    assert dial_spacing(2.0, connect_timeout=0.6) == 0.6
    assert dial_spacing(None, connect_timeout=0.05) == 0.05


def test_one_slow_connect_moves_the_estimate_only_part_of_the_way() -> None:
    estimate = next_connect_estimate(None, 0.04)
    assert estimate == 0.04
    slowed = next_connect_estimate(estimate, 0.44)
    assert 0.04 < slowed < 0.2
    for _ in range(20):
        slowed = next_connect_estimate(slowed, 0.04)
    assert slowed == pytest.approx(0.04, abs=0.001)


# ------------------------------------------------------------------ AnswerWatch


def test_an_ask_unanswered_for_the_limit_ends_the_connection() -> None:
    watch = AnswerWatch()
    assert watch.arm(asked=1, heard=0)  # the caller schedules one look
    assert not watch.arm(asked=2, heard=0)  # a look is due already: no second timer
    assert watch.look(asked=6, heard=0) is Verdict.UNANSWERED


def test_heartbeats_answered_in_time_never_end_the_connection() -> None:
    watch = AnswerWatch()
    watch.arm(asked=1, heard=0)
    for look in range(1, 50):
        assert watch.look(asked=6 * look + 1, heard=6 * look) is Verdict.AGAIN
    # An answer, then a whole limit of asks with nothing back: given up.
    assert watch.look(asked=400, heard=294) is Verdict.UNANSWERED


def test_a_connection_that_stops_asking_needs_no_more_looks() -> None:
    # A follower only answers its leader: nothing it writes arms the watch, no timer runs.
    watch = AnswerWatch()
    assert not watch.armed
    watch.arm(asked=1, heard=0)
    assert watch.look(asked=1, heard=1) is Verdict.ANSWERED
    assert not watch.armed
    assert watch.arm(asked=2, heard=1)


# ------------------------------------------------------------------ one real socket


@pytest.mark.slow
def test_a_connection_whose_heartbeats_go_unanswered_is_given_up_and_redialled() -> None:
    async def body() -> None:
        accepted = 0

        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # A peer behind a partition: its end of the connection takes every byte and
            # answers nothing.
            nonlocal accepted
            accepted += 1
            while await reader.read(65536):
                pass
            writer.close()

        server = await asyncio.start_server(swallow, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport = TcpTransport(
            listen=(LOCALHOST, 0),
            peers={"mute": (LOCALHOST, port)},
            cluster_id="test",
            answer_timeout=0.2,
            backoff_initial=0.01,
            backoff_max=0.1,
        )
        await transport.start("a", Inbox())
        beating = True

        async def beat() -> None:
            while beating:
                transport.send_nowait("mute", HeartBeat(1, "a"))
                await asyncio.sleep(0.02)

        beats = asyncio.create_task(beat())
        try:
            await eventually(lambda: transport.metrics.unanswered >= 1, "the answer timeout")
            await eventually(lambda: accepted >= 2, "a redial")
            # The server accepts before the dialler's handshake is written and counted.
            await eventually(lambda: transport.metrics.connects >= 2, "the redial counted")
        finally:
            beating = False
            await beats
            await transport.close()
            server.close()
            await server.wait_closed()

    asyncio.run(body())


def _iptables_drop(port: int, action: str) -> None:
    """Insert (``-I``) or delete (``-D``) a rule that drops every packet to ``port`` on lo."""
    rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
    subprocess.run(["iptables", action, *rule], check=True, capture_output=True, timeout=10)


def _can_drop_packets() -> bool:
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    probe = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_drop_packets(), reason="needs root and iptables to drop packets")
def test_a_dial_into_a_partition_gets_through_soon_after_the_heal() -> None:
    async def body() -> None:
        listener = socket.socket()
        listener.bind((LOCALHOST, 0))
        listener.listen(16)
        address = listener.getsockname()
        # The partition: every SYN to the listener is dropped. The kernel retransmits it
        # (here about 1, 2, 3, 4, 5 and 7 s after the dial; the gaps grow from there).
        _iptables_drop(address[1], "-I")
        dropping = True
        transport = TcpTransport(
            listen=(LOCALHOST, 0),
            peers={"far": address},
            cluster_id="test",
            connect_timeout=8.0,
            backoff_initial=0.01,
            backoff_max=0.1,
        )
        await transport.start("a", Inbox())
        loop = asyncio.get_running_loop()
        try:
            # Healed 0.2 s after the kernel's first retransmission: an attempt left to the
            # kernel gets through at its next one, 0.8 s after the heal (measured); a fresh
            # SYN every spacing gets through in 0.02 s (measured).
            await asyncio.sleep(1.2)
            assert transport.metrics.connects == 0
            healed = loop.time()
            _iptables_drop(address[1], "-D")
            dropping = False
            await eventually(lambda: transport.metrics.connects == 1, "a connection")
            took = loop.time() - healed
            assert took < 0.5, f"connected {took:.2f} s after the heal"
            assert transport.metrics.connect_timeouts == 0
        finally:
            if dropping:
                _iptables_drop(address[1], "-D")
            await transport.close()
            listener.close()

    asyncio.run(body())


@pytest.mark.slow
def test_a_connection_whose_heartbeats_are_answered_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from almost_raft.transport.tcp._framing import FramedConnection
    from almost_raft.transport.tcp._peer_link import Peer, PeerLink

    real_look = PeerLink._look
    looks = 0

    def counted_look(
        self: PeerLink, peer: Peer, connection: FramedConnection, limit: float
    ) -> None:
        nonlocal looks
        looks += 1
        real_look(self, peer, connection, limit)

    monkeypatch.setattr(PeerLink, "_look", counted_look)

    async def body() -> None:
        inboxes = {"a": Inbox(), "b": Inbox()}
        transports = {
            node: TcpTransport(
                listen=(LOCALHOST, 0), peers={}, cluster_id="test", answer_timeout=0.2
            )
            for node in inboxes
        }
        for node, transport in transports.items():
            await transport.start(node, inboxes[node])
        transports["a"].set_peer_address("b", transports["b"].address)
        transports["b"].set_peer_address("a", transports["a"].address)
        beating = True

        async def beat() -> None:
            # A leader's heartbeats, each answered by its follower.
            while beating:
                transports["a"].send_nowait("b", HeartBeat(1, "a"))
                transports["b"].send_nowait("a", HeartBeatResponse(1, "b"))
                await asyncio.sleep(0.02)

        beats: asyncio.Task[None] | None = None
        try:
            await eventually(
                lambda: all(t.metrics.connects for t in transports.values()), "connections"
            )
            beats = asyncio.create_task(beat())
            # Each look is a moment the connection would be given up if its asks went
            # unanswered; four of them span four answer timeouts.
            await eventually(lambda: looks >= 4, "four looks at the answers")
            assert transports["a"].metrics.unanswered == 0, "an answered connection given up"
            assert transports["a"].metrics.connects == 1
        finally:
            beating = False
            if beats is not None:
                await beats
            for transport in transports.values():
                await transport.close()

    asyncio.run(body())


def test_a_node_gives_connections_up_after_about_an_election_timeout() -> None:
    from almost_raft.core._config import ElectionConfig
    from almost_raft.transport.tcp._settings import timeouts_for_election

    lan = ElectionConfig(election_timeout=0.15, election_timeout_max=0.3, heartbeat_interval=0.05)
    assert timeouts_for_election(lan) == {
        "answer_timeout": 0.3,
        "connect_timeout": 0.6,
        "backoff_max": 0.6,
    }
    # Tiny test timeouts do not make a busy machine's pauses end connections.
    tiny = ElectionConfig(election_timeout=0.02, heartbeat_interval=0.005)
    assert timeouts_for_election(tiny)["answer_timeout"] == 0.2
    assert timeouts_for_election(tiny)["connect_timeout"] == 0.25
    # A slow cluster still redials a lost peer at least every second.
    assert timeouts_for_election(ElectionConfig())["backoff_max"] == 1.0


def _refusing_port() -> socket.socket:
    """A port that refuses every dial, as a machine that left the cluster does.

    Bound but not listening: a port merely closed could be taken at once by a listener
    of the test itself (a transport's, on port 0), which would then answer the dials.
    """
    sock = socket.socket()
    sock.bind((LOCALHOST, 0))
    return sock


@pytest.mark.slow
def test_a_peer_dialled_on_demand_is_dialled_only_while_a_message_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from almost_raft.transport.tcp._framing import FramedConnection
    from almost_raft.transport.tcp._metrics import ConnectFailure
    from almost_raft.transport.tcp._peer_link import Peer, PeerLink

    real_connect = PeerLink._connect
    # Dials begun, and dials refused, by peer.
    dials: collections.Counter[str] = collections.Counter()
    refused: collections.Counter[str] = collections.Counter()

    async def counted_connect(
        self: PeerLink, peer: Peer, *, probe: bool, quiet: bool = False
    ) -> FramedConnection | ConnectFailure | None:
        dials[peer.node_id] += 1
        outcome = await real_connect(self, peer, probe=probe, quiet=quiet)
        if outcome is ConnectFailure.REFUSED:
            refused[peer.node_id] += 1
        return outcome

    monkeypatch.setattr(PeerLink, "_connect", counted_connect)

    async def body() -> None:
        left, kept = _refusing_port(), _refusing_port()
        transport = TcpTransport(
            listen=(LOCALHOST, 0),
            # "kept" is gone too but stays a member: its redials, one every backoff, are
            # the moments "left" would be dialled if it were still kept connected.
            peers={"left": left.getsockname(), "kept": kept.getsockname()},
            cluster_id="test",
            backoff_initial=0.01,
            backoff_max=0.02,
        )
        await transport.start("a", Inbox())

        async def kept_redialled(times: int) -> None:
            then = refused["kept"]
            await eventually(
                lambda: refused["kept"] >= then + times, f"{times} redials of the member"
            )

        try:
            # Kept connected, a peer is redialled every backoff.
            await eventually(lambda: refused["left"] >= 3, "redials")
            transport.dial_on_demand("left")
            # A dial under way may end, but none begins.
            idle = dials["left"]
            await kept_redialled(10)
            assert dials["left"] == idle, "dialled with nothing to send"
            # A message for it is one dial; when that fails, the message is dropped and
            # nothing more is dialled.
            transport.send_nowait("left", HeartBeat(1, "a"))
            await eventually(lambda: dials["left"] == idle + 1, "one dial")
            await eventually(lambda: refused["left"] == idle + 1, "the dial refused")
            assert transport.metrics.connect_refused == refused.total()
            await kept_redialled(10)
            assert dials["left"] == idle + 1, "dialled again with nothing to send"
            assert transport.queued("left") == 0
            # Made a member again, it is kept connected (redialled) again.
            transport.dial_on_demand("left", False)
            await eventually(lambda: refused["left"] >= idle + 4, "redials again")
        finally:
            await transport.close()
            left.close()
            kept.close()

    asyncio.run(body())


@pytest.mark.slow
def test_a_message_for_a_peer_dialled_on_demand_is_delivered() -> None:
    async def body() -> None:
        async with two_nodes(on_demand=True) as (a, _, inboxes):
            a.send_nowait("b", HeartBeat(7, "a"))
            await eventually(
                lambda: any(m == HeartBeat(7, "a") for m in inboxes["b"].messages),
                "the message over a dial made for it",
            )

    asyncio.run(body())


@pytest.mark.slow
def test_a_dialler_that_fails_starts_again_and_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    from almost_raft.transport.tcp._peer_link import PeerLink

    real_connect = PeerLink._connect
    failures: list[int] = []

    async def failing_once(self: PeerLink, *args: object, **kwargs: object) -> object:
        if not failures:
            failures.append(1)
            raise OSError(9, "Bad file descriptor")  # as a socket reset as it was made
        return await real_connect(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PeerLink, "_connect", failing_once)

    async def body() -> None:
        async with two_nodes(backoff_max=0.05) as (a, _, inboxes):
            await eventually(lambda: a.metrics.connects == 1, "a connection after the error")
            assert a.metrics.dialler_errors == 1
            a.send_nowait("b", HeartBeat(3, "a"))
            await eventually(lambda: HeartBeat(3, "a") in inboxes["b"].messages, "a heartbeat")

    asyncio.run(body())

"""The kernel options of peer connections: the retransmission floor and the ack delay."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from almost_raft import ConfigError
from almost_raft.core._messages import HeartBeat
from almost_raft.transport.tcp._settings import TcpSettings
from almost_raft.transport.tcp._socket_tuning import (
    RETRANSMIT_FLOOR_RANGE,
    ack_delay_cap,
    tune_received,
    tune_sent,
)
from almost_raft.transport.tcp._transport import TcpTransport
from helpers.tcp_pair import two_nodes
from helpers.transport import eventually

LOCALHOST = "127.0.0.1"
TCP_THIN_LINEAR_TIMEOUTS, TCP_RTO_MIN_US, TCP_DELACK_MAX_US = 16, 45, 46


def _kernel_takes_the_options() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with socket.socket() as sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_RTO_MIN_US, 20_000)
            sock.setsockopt(socket.IPPROTO_TCP, TCP_DELACK_MAX_US, 8_000)
        except OSError:
            return False
    return True


needs_the_options = pytest.mark.skipif(
    not _kernel_takes_the_options(),
    reason="the kernel has no TCP_RTO_MIN_US / TCP_DELACK_MAX_US (Linux 6.15 and later)",
)


def _settings(floor: float | None, answer_timeout: float | None = 0.5) -> TcpSettings:
    return TcpSettings(
        cluster_id="test",
        max_frame_bytes=65536,
        queue_size=8,
        connect_timeout=1.0,
        handshake_timeout=1.0,
        write_timeout=1.0,
        backoff_initial=0.05,
        backoff_max=1.0,
        send_buffer_bytes=65536,
        tls=None,
        secret=None,
        answer_timeout=answer_timeout,
        min_retransmit_timeout=floor,
    )


def _options(sock: socket.socket) -> tuple[int, int]:
    return (
        sock.getsockopt(socket.IPPROTO_TCP, TCP_RTO_MIN_US),
        sock.getsockopt(socket.IPPROTO_TCP, TCP_DELACK_MAX_US),
    )


def test_the_ack_delay_is_a_quarter_of_the_floor_and_no_less_than_the_kernel_takes() -> None:
    assert ack_delay_cap(0.1) == pytest.approx(0.025)
    assert ack_delay_cap(0.02) == RETRANSMIT_FLOOR_RANGE[0]


@needs_the_options
def test_both_ends_of_a_connection_get_the_floor_and_the_ack_delay() -> None:
    with socket.socket() as sent, socket.socket() as received:
        defaults = _options(sent)
        tune_sent(sent, _settings(0.05))
        tune_received(received, _settings(0.05))
        for sock in (sent, received):
            rto_min, delack_max = _options(sock)
            # The kernel counts in clock ticks, so it may round up a little.
            assert 50_000 <= rto_min < 60_000
            assert 12_500 <= delack_max < 22_500
        assert sent.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 500
        # The dialled end sends the messages, so it is the one that retransmits.
        assert sent.getsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS) == 1
        assert received.getsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS) == 0
        with socket.socket() as untouched:
            tune_sent(untouched, _settings(None))
            assert _options(untouched) == defaults
            assert untouched.getsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS) == 0


@pytest.mark.parametrize("floor", [0.001, 0.5, 0, -1, True, "0.02", float("nan")])
def test_a_floor_the_kernel_would_refuse_is_a_config_error_naming_the_range(
    floor: object,
) -> None:
    with pytest.raises(ConfigError) as caught:
        TcpTransport(
            listen=(LOCALHOST, 0),
            peers={},
            cluster_id="test",
            min_retransmit_timeout=floor,  # type: ignore[arg-type]
        )
    assert caught.value.field == "min_retransmit_timeout"
    assert "0.005" in str(caught.value)
    assert "0.2" in str(caught.value)


@needs_the_options
def test_a_transport_sets_the_floor_on_the_connections_it_dials_and_accepts() -> None:
    async def body() -> None:
        async with two_nodes(min_retransmit_timeout=0.03) as (a, b, inboxes):
            await a.send("b", HeartBeat(1, "a"))
            await eventually(lambda: len(inboxes["b"].messages) == 1, "a's heartbeat at b")
            dialled = a._peers["b"].connection
            assert dialled is not None
            assert b._inbound is not None
            accepted = [
                connection
                for connection, node in b._inbound.connections.items()
                if node == "a" and connection.transport is not None
            ]
            assert accepted
            for connection in (dialled, accepted[0]):
                assert connection.transport is not None
                sock = connection.transport.get_extra_info("socket")
                rto_min, delack_max = _options(sock)
                assert 30_000 <= rto_min < 40_000
                assert 5_000 <= delack_max < 12_500

    asyncio.run(body())

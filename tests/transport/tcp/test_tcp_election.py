"""Three Elections over real TCP connections on 127.0.0.1: elect, fail over, rejoin."""

from __future__ import annotations

from pathlib import Path

import pytest

from almost_raft import Election, ElectionConfig, FileStore, NodeState, TcpTransport
from helpers.cluster import run_async, wait_until

pytestmark = pytest.mark.slow

NODE_IDS = ("a", "b", "c")
# Loopback TCP is fast, but a busy machine is not: keep heartbeats well inside the timeout.
CONFIG = ElectionConfig(
    election_timeout=0.3, heartbeat_interval=0.03, message_timeout=0.2, election_timeout_max=0.6
)


def tcp(listen: tuple[str, int] = ("127.0.0.1", 0)) -> TcpTransport:
    return TcpTransport(
        listen=listen, peers={}, cluster_id="tcp-test", backoff_initial=0.01, backoff_max=0.1
    )


def introduce(transports: dict[str, TcpTransport]) -> None:
    """Tell every started transport where every other one listens."""
    for node_id, transport in transports.items():
        for other_id, other in transports.items():
            if other_id != node_id:
                transport.set_peer_address(other_id, other.address)


def the_leader(elections: dict[str, Election]) -> str | None:
    """The leader every election agrees on, in one term; None while they disagree."""
    statuses = [election.status() for election in elections.values()]
    leaders = {(s.leader_id, s.term) for s in statuses}
    if len(leaders) != 1 or sum(s.role is NodeState.LEADER for s in statuses) != 1:
        return None
    ((leader_id, _),) = leaders
    return leader_id


def build(tmp_path: Path) -> tuple[dict[str, TcpTransport], dict[str, Election]]:
    """Three Elections over TCP with file stores, not started yet."""
    transports = {node_id: tcp() for node_id in NODE_IDS}
    elections = {
        node_id: Election(
            node_id,
            NODE_IDS,
            transports[node_id],
            config=CONFIG,
            store=FileStore(tmp_path / f"{node_id}.json"),
        )
        for node_id in NODE_IDS
    }
    return transports, elections


async def start(transports: dict[str, TcpTransport], elections: dict[str, Election]) -> None:
    for election in elections.values():
        await election.start()
    # Ports are picked at start, so the addresses are known only now.
    introduce(transports)


async def wait_for_a_leader(elections: dict[str, Election]) -> str:
    await wait_until(lambda: the_leader(elections) is not None, what="a leader all agree on")
    leader = the_leader(elections)
    assert leader is not None
    return leader


@run_async
async def test_three_elections_over_tcp_elect_fail_over_and_rejoin(tmp_path: Path) -> None:
    transports, elections = build(tmp_path)
    try:
        await start(transports, elections)
        first = await wait_for_a_leader(elections)
        first_term = elections[first].status().term

        # The leader's process goes away, as abruptly as a crash: the other two elect one
        # of themselves.
        first_address = transports[first].address
        await elections[first].close(hand_over=False)
        survivors = {n: e for n, e in elections.items() if n != first}
        second = await wait_for_a_leader(survivors)
        assert second != first
        assert survivors[second].status().term > first_term
        assert transports[second].metrics.connect_refused > 0
        # The followers saw the leader's port refuse them and did not wait for a timeout.
        assert sum(e.metrics().leader_down_reports for e in survivors.values()) >= 1

        # It comes back on the same port with its stored term and vote, and follows.
        transports[first] = tcp(listen=first_address)
        elections[first] = Election(
            first,
            [peer for peer in NODE_IDS if peer != first],
            transports[first],
            config=CONFIG,
            store=FileStore(tmp_path / f"{first}.json"),
        )
        await elections[first].start()
        for node_id, transport in transports.items():
            if node_id != first:
                transports[first].set_peer_address(node_id, transport.address)
        await wait_until(
            lambda: elections[first].status().leader_id == second, what="the rejoined follower"
        )
        assert the_leader(elections) == second

        for transport in transports.values():
            metrics = transport.metrics
            assert metrics.received.total > 0
            assert (
                metrics.bad_oversized
                + metrics.bad_undecodable
                + metrics.bad_unknown_kind
                + metrics.bad_field
                + metrics.bad_impersonation
                + metrics.handshakes_refused
            ) == 0
    finally:
        for election in elections.values():
            await election.close()


@run_async
async def test_a_leader_that_closes_hands_over_to_a_peer(tmp_path: Path) -> None:
    transports, elections = build(tmp_path)
    try:
        await start(transports, elections)
        first = await wait_for_a_leader(elections)
        first_term = elections[first].status().term
        await elections.pop(first).close()
        second = await wait_for_a_leader(elections)
        assert elections[second].status().term == first_term + 1
        assert elections[second].metrics().handovers_received == 1
        # The leaving leader stayed until its successor was known, so no follower saw its
        # port refuse a connection while it mattered.
        assert all(e.metrics().leader_down_reports == 0 for e in elections.values())
    finally:
        for election in elections.values():
            await election.close()

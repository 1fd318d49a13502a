"""GET /status and /metrics, and the cluster table built from them."""

from __future__ import annotations

import asyncio
import io

from almost_raft import Election, InMemoryNetwork
from almost_raft.cli._status import NodeReport, fetch_status, print_cluster_status
from almost_raft.node._cluster_config import NodeEntry
from almost_raft.node._http import StatusServer, json_route
from almost_raft.node._prometheus import metrics_text
from almost_raft.node._supervisor import CommandCounts
from helpers.cluster import FAST, run_async


async def _raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


@run_async
async def test_status_route_answers_json_and_bad_requests_are_refused() -> None:
    server = StatusServer("127.0.0.1", 0, {"/status": json_route(lambda: {"term": 3})})
    await server.start()
    try:
        _, port = server.address
        assert await fetch_status("127.0.0.1", port, 5.0) == {"term": 3}
        not_found = await _raw_request(port, b"GET /nope HTTP/1.1\r\n\r\n")
        assert not_found.startswith(b"HTTP/1.1 404")
        post = await _raw_request(port, b"POST /status HTTP/1.1\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405")
        garbage = await _raw_request(port, b"\x00\xff garbage\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400")
        huge = await _raw_request(port, b"GET /status HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 400")
        # The server still answers after all that.
        assert await fetch_status("127.0.0.1", port, 5.0) == {"term": 3}
    finally:
        await server.close()


@run_async
async def test_head_answers_like_get_without_the_body() -> None:
    server = StatusServer("127.0.0.1", 0, {"/status": json_route(lambda: {"term": 3})})
    await server.start()
    try:
        _, port = server.address
        get = await _raw_request(port, b"GET /status HTTP/1.1\r\n\r\n")
        head = await _raw_request(port, b"HEAD /status HTTP/1.1\r\n\r\n")
        get_head, _, body = get.partition(b"\r\n\r\n")
        assert body
        assert head == get_head + b"\r\n\r\n"
        assert f"Content-Length: {len(body)}".encode() in head
    finally:
        await server.close()


@run_async
async def test_metrics_text_reports_the_election() -> None:
    network = InMemoryNetwork()
    election = Election("a", [], network.transport("a"), config=FAST)
    async with election:
        await election.wait_for_leader(timeout=10)
        text = metrics_text(election, None).decode()
    assert "almost_raft_term 1.0" in text
    assert 'almost_raft_role{role="leader"} 1.0' in text
    assert "almost_raft_is_leader 1.0" in text
    assert "almost_raft_elections_won_total 1.0" in text
    # Every counter of Election.metrics() that says how elections went is exported.
    for name in ("leader_down_reports", "early_pre_votes", "handovers_received"):
        assert f"almost_raft_{name}_total 0.0" in text


@run_async
async def test_metrics_text_reports_the_leader_command() -> None:
    network = InMemoryNetwork()
    election = Election("a", [], network.transport("a"), config=FAST)
    counts = CommandCounts(running=True, starts=3, lease_lapses=2, exits=0)
    async with election:
        text = metrics_text(election, None, lambda: counts).decode()
        without = metrics_text(election, None).decode()
    assert "almost_raft_command_running 1.0" in text
    assert "almost_raft_command_starts_total 3.0" in text
    assert "almost_raft_command_lease_lapses_total 2.0" in text
    assert "almost_raft_command_exits_total 0.0" in text
    assert "almost_raft_command" not in without


def _entry(node: str, port: int) -> NodeEntry:
    return NodeEntry(node, ("127.0.0.1", port), ("127.0.0.1", port + 100))


def test_cluster_table_shows_every_node_and_agreement() -> None:
    leader = {
        "role": "leader",
        "term": 4,
        "leader": "a",
        "peers": {"b": {"last_heard_seconds": 0.02}},
    }
    follower = {"role": "follower", "term": 4, "leader": "a", "peers": {}}
    reports = [
        NodeReport(_entry("a", 7001), leader, None),
        NodeReport(_entry("b", 7002), follower, None),
        NodeReport(_entry("c", 7003), None, "connection refused"),
    ]
    out = io.StringIO()
    assert print_cluster_status(reports, out)
    text = out.getvalue()
    assert "no: connection refused" in text
    assert "20 ms ago" in text
    assert "all reachable nodes agree: a leads term 4" in text


def test_cluster_table_flags_disagreement() -> None:
    reports = [
        NodeReport(_entry("a", 7001), {"role": "leader", "term": 4, "leader": "a"}, None),
        NodeReport(_entry("b", 7002), {"role": "leader", "term": 5, "leader": "b"}, None),
    ]
    out = io.StringIO()
    assert not print_cluster_status(reports, out)
    assert "do not agree" in out.getvalue()

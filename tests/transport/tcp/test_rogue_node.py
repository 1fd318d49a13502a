"""A rogue process that reaches a real cluster's ports and sends election messages.

A process that is not a member is refused at the handshake, whatever it sends after.
A connection that claims a member's id but sends in another's name is closed as an
impersonation. A connection that claims a member's id and asks for votes in a huge term
is heard, but the term rules drop the request while a leader is alive (leader stickiness),
so no node's term moves.

Without authentication nothing proves that a connection comes from the member it names,
so a forged heartbeat in a member's name *is* believed: the last test shows what it does.
"""

from __future__ import annotations

import re
import socket

import pytest

from almost_raft.core._messages import HeartBeat, PeerMessage, RequestVote
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster
from almost_raft.transport.tcp._handshake_frames import Handshake, encode_handshake
from almost_raft.transport.tcp._wire import PROTOCOL_VERSION, encode_message

pytestmark = pytest.mark.slow

DEADLINE = 20.0
HUGE_TERM = 10**12
# Wide enough that a forged connection displacing a real peer's for a moment, on a loaded
# machine, cannot depose the leader (as in the hostile-peer tests).
TIMINGS = ClusterTimings(
    election_timeout_ms=500,
    election_timeout_max_ms=1000,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)

_COUNTER = re.compile(r'^almost_raft_(\w+)_total\{reason="(\w+)"\} (\S+)$', re.MULTILINE)


def counters(cluster: ProcessCluster, node: str) -> dict[str, int]:
    """``{"bad_frames.handshake_refused": 1, "messages_ignored.stale_term": 0, ...}``."""
    text = cluster.metrics(node)
    assert text is not None, f"{node} serves no /metrics"
    return {f"{family}.{reason}": int(float(v)) for family, reason, v in _COUNTER.findall(text)}


def forge(
    cluster: ProcessCluster, target: str, claimed: str, messages: list[PeerMessage]
) -> socket.socket:
    """Open a connection to ``target`` that claims to be ``claimed`` and send ``messages``."""
    sock = socket.create_connection(cluster.addresses[target], timeout=DEADLINE)
    frames = encode_handshake(Handshake(PROTOCOL_VERSION, cluster.cluster_id, claimed))
    sock.sendall(frames + b"".join(encode_message(m) for m in messages))
    return sock


def expect_closed(sock: socket.socket) -> None:
    with sock:
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        # A node never writes on a connection it accepted: its only answer is closing.
        assert data == b"", f"the node answered {data!r}"


def wait_for_counter(
    cluster: ProcessCluster, node: str, name: str, at_least: int
) -> dict[str, int]:
    def moved() -> dict[str, int] | None:
        found = counters(cluster, node)
        return found if found.get(name, 0) >= at_least else None

    return cluster.wait_for(moved, DEADLINE, f"{node}'s {name} to reach {at_least}")


def assert_unchanged(cluster: ProcessCluster, leader: str, term: int) -> None:
    assert cluster.wait_for_agreed_leader(DEADLINE) == (leader, term)
    for node in cluster.ids:
        status = cluster.status(node)
        assert status is not None
        assert (status["leader"], status["term"]) == (leader, term), (node, status)


def test_a_non_member_or_an_impersonated_member_cannot_raise_any_term() -> None:
    with ProcessCluster(3, timings=TIMINGS) as cluster:
        leader, term = cluster.wait_for_agreed_leader(DEADLINE)
        follower, other = [node for node in cluster.ids if node != leader]
        before = {node: counters(cluster, node) for node in cluster.ids}

        # Not a member: refused at the handshake, the vote request is never read.
        for node in cluster.ids:
            expect_closed(forge(cluster, node, "mallory", [RequestVote(HUGE_TERM, "mallory")]))
        for node in cluster.ids:
            key = "bad_frames.handshake_refused"
            wait_for_counter(cluster, node, key, before[node][key] + 1)
        assert_unchanged(cluster, leader, term)

        # A member's id on the handshake, another member's name on the message.
        for node in (leader, other):
            expect_closed(forge(cluster, node, follower, [RequestVote(HUGE_TERM, node)]))
            key = "bad_frames.impersonation"
            wait_for_counter(cluster, node, key, before[node][key] + 1)
        assert_unchanged(cluster, leader, term)

        # A second connection that claims a follower consistently, with real and pre-vote
        # requests of a huge term: heard, and dropped by the leader's lease on every node
        # that hears the leader, the leader itself included.
        key = "messages_ignored.vote_request_during_lease"
        for node in (leader, other):
            requests: list[PeerMessage] = [
                RequestVote(HUGE_TERM, follower),
                RequestVote(HUGE_TERM + 1, follower, pre_vote=True),
            ]
            with forge(cluster, node, follower, requests):
                wait_for_counter(cluster, node, key, before[node].get(key, 0) + 2)
        assert_unchanged(cluster, leader, term)
        after = {node: counters(cluster, node) for node in cluster.ids}
        for node in cluster.ids:
            assert after[node].get("messages_ignored.unknown_sender", 0) == before[node].get(
                "messages_ignored.unknown_sender", 0
            )


def test_without_authentication_a_forged_heartbeat_in_a_members_name_is_believed() -> None:
    # This is what mutual TLS or a shared secret is for: without them, anyone who can reach
    # the port and knows a member id speaks for that member. A heartbeat of a newer term
    # passes the term rules (a leader of a newer term exists, as far as anyone can tell),
    # so its term spreads and the cluster elects again above it. The cluster recovers:
    # the term is higher, nothing else is lost.
    with ProcessCluster(3, timings=TIMINGS) as cluster:
        leader, term = cluster.wait_for_agreed_leader(DEADLINE)
        follower, other = [node for node in cluster.ids if node != leader]
        forged_term = term + 1000
        with forge(cluster, other, follower, [HeartBeat(forged_term, follower)]):

            def took_forged_term() -> int | None:
                status = cluster.status(other)
                return forged_term if status is not None and status["term"] >= forged_term else None

            cluster.wait_for(took_forged_term, DEADLINE, f"{other} to take the forged term")
        new_leader, new_term = cluster.wait_for_agreed_leader(DEADLINE, above_term=forged_term)
        assert new_term > forged_term
        assert new_leader in cluster.ids

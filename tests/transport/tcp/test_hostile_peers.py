"""Garbage, forged handshakes and malformed frames sent to a real node's TCP port.

Every bad connection must be refused (the node closes it), counted under its reason in
``/metrics``, and change nothing: the cluster keeps the same leader and term.
"""

from __future__ import annotations

import collections
import random
import re
import socket
import struct

import msgpack
import pytest

from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

pytestmark = pytest.mark.slow

DEADLINE = 20.0
# Ten heartbeats per election timeout: a test that asserts nothing changed must not see
# a loaded machine depose a healthy leader.
TIMINGS = ClusterTimings(
    election_timeout_ms=500,
    election_timeout_max_ms=1000,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)

_BAD_FRAMES = re.compile(r'^almost_raft_bad_frames_total\{reason="(\w+)"\} (\S+)$', re.MULTILINE)
_ACCEPTED = re.compile(r"^almost_raft_tcp_accepted_total (\S+)$", re.MULTILINE)


def frame(fields: object) -> bytes:
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return raw_frame(body)


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def handshake(cluster_id: str, node_id: str, version: int = 1) -> bytes:
    return frame(["almost-raft", version, cluster_id, node_id])


def bad_frame_counts(cluster: ProcessCluster, node: str) -> dict[str, int]:
    text = cluster.metrics(node)
    assert text is not None, f"{node} serves no /metrics"
    counts = {reason: int(float(value)) for reason, value in _BAD_FRAMES.findall(text)}
    accepted = _ACCEPTED.search(text)
    assert accepted is not None
    counts["accepted"] = int(float(accepted.group(1)))
    return counts


def connections_lost(cluster: ProcessCluster, node: str, to: str) -> int:
    """How often ``node`` has logged that its connection to ``to`` broke."""
    return cluster.log_path(node).read_text().count(f'"{node}: connection to {to} lost')


def send_and_expect_close(address: tuple[str, int], payload: bytes) -> None:
    """Send ``payload`` on a new connection; fail unless the node then closes it."""
    with socket.create_connection(address, timeout=DEADLINE) as sock:
        sock.sendall(payload)
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        # A node never writes on a connection it accepted, so the only answer is closing.
        assert data == b"", f"the node answered {data!r}"


def attacks(cluster_id: str, target: str, claimed: str) -> list[tuple[str, bytes]]:
    """(the counter each should raise, the bytes) for one target node.

    ``claimed`` is a real peer id that the forged valid handshakes speak for. None of
    these connections sends a valid message, so none may replace that peer's own
    connection; it is not the leader either way, in case one did.
    """
    valid = handshake(cluster_id, claimed)
    return [
        # Refused at the handshake.
        ("handshake_refused", handshake("another-cluster", claimed)),
        ("handshake_refused", handshake(cluster_id, "mallory")),
        ("handshake_refused", handshake(cluster_id, target)),
        ("handshake_refused", handshake(cluster_id, claimed, version=99)),
        ("handshake_refused", frame([1, 2, 3])),
        ("handshake_refused", frame(["almost-raft", True, cluster_id, claimed])),
        ("oversized", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("oversized", b"\xff\xff\xff\xff"),
        ("undecodable", raw_frame(b"\xc1\xc1\xc1")),
        # A valid handshake, then a bad message.
        ("unknown_kind", valid + frame([9, 1])),
        ("field", valid + frame([3, "1", claimed])),
        ("field", valid + frame([3, 1])),
        ("field", valid + frame([1, 1, claimed, 1])),
        ("field", valid + frame([6, 1, claimed])),
        ("field", valid + frame([6, 1, claimed, [0, 0, [[claimed, True, None]]]])),
        ("field", valid + frame([7, 1, claimed, 1])),
        ("undecodable", valid + raw_frame(b"\x93\x03\x01")),
        ("impersonation", valid + frame([3, 10**6, target, 0])),
        ("oversized", valid + struct.pack(">I", 1 << 20)),
    ]


def garbage(rng: random.Random, count: int) -> list[bytes]:
    """Frames of random bytes; the length prefix is right, so the node reads them whole."""
    return [raw_frame(rng.randbytes(rng.randrange(1, 200))) for _ in range(count)]


def attack_and_count(
    cluster: ProcessCluster, target: str, claimed: str, rng: random.Random
) -> None:
    """Send every attack to ``target``; check each was refused and counted by reason."""
    before = bad_frame_counts(cluster, target)
    claimed_lost = connections_lost(cluster, claimed, target)
    cases = attacks(cluster.cluster_id, target, claimed)
    noise = garbage(rng, 8)
    for payload in [*(payload for _, payload in cases), *noise]:
        send_and_expect_close(cluster.addresses[target], payload)
    expected = collections.Counter(reason for reason, _ in cases)
    connections = len(cases) + len(noise)

    def counted() -> dict[str, int] | None:
        after = bad_frame_counts(cluster, target)
        delta = {reason: after[reason] - before[reason] for reason in after}
        refused = sum(value for reason, value in delta.items() if reason != "accepted")
        return delta if refused >= connections else None

    delta = cluster.wait_for(counted, DEADLINE, f"{target} to count every bad frame")
    # Real peers redial too (a forged handshake displaces one's connection).
    assert delta["accepted"] >= connections
    assert sum(v for r, v in delta.items() if r != "accepted") == connections
    for reason, count in expected.items():
        assert delta[reason] >= count, (reason, delta)
    # Random bytes never get past the handshake, so these counts are exact.
    for reason in ("unknown_kind", "field", "impersonation"):
        assert delta[reason] == expected[reason], (reason, delta)
    # The peer the forgeries named kept its own connection. Asking it for its status
    # first lets its event loop see a reset that arrived while the attacks went on.
    assert cluster.status(claimed) is not None
    assert connections_lost(cluster, claimed, target) == claimed_lost


def test_bad_frames_are_refused_and_counted_and_change_nothing() -> None:
    rng = random.Random(20240517)
    with ProcessCluster(3, timings=TIMINGS) as cluster:
        leader, term = cluster.wait_for_agreed_leader(DEADLINE)
        followers = [node for node in cluster.ids if node != leader]
        # Both roles: the leader, and a follower, each with a forged peer that is not the
        # leader (whose heartbeats a follower must keep receiving).
        for target, claimed in ((leader, followers[0]), (followers[0], followers[1])):
            attack_and_count(cluster, target, claimed, rng)
            assert cluster.wait_for_agreed_leader(DEADLINE) == (leader, term)
            for node in cluster.ids:
                status = cluster.status(node)
                assert status is not None
                assert (status["leader"], status["term"]) == (leader, term)

"""A flood of garbage frames at the leader: it stays leader and its memory stays bounded.

Three Elections run over TCP in this process; a separate process (so that it has its own
CPU) sends garbage frames to the leader's port at 10,000 frames per second. The node cuts
a connection off at its first bad frame, so the attacker reconnects all the time; each
connection carries a short burst of frames, of three kinds: random bytes, frames of
random bytes behind a correct length, and garbage behind a valid handshake that claims a
member's id (the cluster has no secret, so that handshake is accepted). The node reads
only the first frame of each connection: that is the one it refuses.

The suite floods for 3 seconds; ``ALMOST_RAFT_FLOOD_SECONDS=10`` runs the full
10-second flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from almost_raft import Election, ElectionConfig, NodeState, TcpTransport
from helpers.cluster import run_async, wait_until

pytestmark = pytest.mark.slow

NODE_IDS = ("a", "b", "c")
CLUSTER = "flood-test"
RATE = 10_000
# Frames per connection. Loopback here takes about a thousand new connections a second,
# even to a bare asyncio server, so 10,000 frames a second need bursts; the node reads
# the first frame of each and cuts the connection off, and the kernel drops the rest.
BURST = 16
SECONDS = float(os.environ.get("ALMOST_RAFT_FLOOD_SECONDS", "3"))
# The defaults of a real deployment: the flood must not make a healthy leader look dead.
CONFIG = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1)
# Generous: what matters is that memory does not grow with the number of frames.
RSS_GROWTH_LIMIT = 64 * 1024 * 1024

ATTACKER = r"""
import asyncio, json, random, struct, sys

import msgpack

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rate, burst, cluster, member = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
rng = random.Random(20240601)
stats = {"connections": 0, "frames": 0, "connect_errors": 0, "seconds": 0.0}


def frame(body):
    return struct.pack(">I", len(body)) + body


hello = frame(msgpack.packb(["almost-raft", 1, cluster, member]))


def garbage():
    kind = rng.randrange(3)
    if kind == 0:
        # A first byte above zero announces a frame of 16 MiB or more: refused from the header.
        return bytes([rng.randrange(1, 256)]) + rng.randbytes(rng.randrange(3, 64))
    body = frame(rng.randbytes(rng.randrange(1, 64)))
    return body if kind == 1 else hello + body


async def worker(start, deadline):
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        ahead = stats["frames"] - rate * (loop.time() - start)
        if ahead > 0:
            await asyncio.sleep(ahead / rate)
            continue
        payload = [garbage() for _ in range(burst)]
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.01)
            continue
        writer.write(b"".join(payload))
        stats["frames"] += burst
        try:
            # The node closes the connection at the first bad frame.
            await asyncio.wait_for(reader.read(), 5.0)
        except (OSError, asyncio.TimeoutError):
            pass
        writer.transport.abort()
        stats["connections"] += 1


async def main():
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(worker(start, start + seconds) for _ in range(64)))
    stats["seconds"] = loop.time() - start


asyncio.run(main())
print(json.dumps(stats))
"""


class CountingHandler(logging.Handler):
    """Counts records instead of keeping them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@contextlib.contextmanager
def counted_transport_log() -> Iterator[CountingHandler]:
    """Count the transport's log records rather than let the test runner keep them all.

    pytest keeps every captured record in memory for the report, which would make the
    test measure pytest's memory instead of the node's.
    """
    logger = logging.getLogger("almost_raft.tcp")
    handler = CountingHandler()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.propagate = True
        logger.removeHandler(handler)


def rss_bytes() -> int:
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def tcp() -> TcpTransport:
    return TcpTransport(listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER)


def the_leader(elections: dict[str, Election]) -> tuple[str, int] | None:
    statuses = [election.status() for election in elections.values()]
    views = {(s.leader_id, s.term) for s in statuses}
    if len(views) != 1 or sum(s.role is NodeState.LEADER for s in statuses) != 1:
        return None
    ((leader, term),) = views
    return None if leader is None else (leader, term)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
@run_async
async def test_a_garbage_flood_changes_neither_leader_nor_memory() -> None:
    transports = {node_id: tcp() for node_id in NODE_IDS}
    elections = {
        node_id: Election(
            node_id, [p for p in NODE_IDS if p != node_id], transports[node_id], config=CONFIG
        )
        for node_id in NODE_IDS
    }
    try:
        for election in elections.values():
            await election.start()
        for node_id, transport in transports.items():
            for other_id, other in transports.items():
                if other_id != node_id:
                    transport.set_peer_address(other_id, other.address)
        await wait_until(lambda: the_leader(elections) is not None, what="a first leader")
        found = the_leader(elections)
        assert found is not None
        leader, term = found
        member = next(node for node in NODE_IDS if node != leader)
        target = transports[leader]
        campaigns_before = _campaigns(elections)
        refused_before = _refused(target)
        rss_before, fds_before = rss_bytes(), open_descriptors()
        with counted_transport_log() as log:
            attacker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                ATTACKER,
                *map(str, (*target.address, SECONDS, RATE, BURST, CLUSTER, member)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            changes: list[tuple[str, int] | None] = []
            peak_rss = rss_before
            try:
                while attacker.returncode is None:
                    now = the_leader(elections)
                    if now != (leader, term):
                        changes.append(now)
                    peak_rss = max(peak_rss, rss_bytes())
                    try:
                        async with asyncio.timeout(0.05):
                            await attacker.wait()
                    except TimeoutError:
                        pass
                out, err = await attacker.communicate()
            finally:
                if attacker.returncode is None:
                    attacker.kill()
                    await attacker.wait()
        assert attacker.returncode == 0, err.decode()
        stats = json.loads(out)

        # Every attacking connection ends; none is left open.
        await wait_until(
            lambda: open_descriptors() <= fds_before + 2, what="the attackers' sockets to close"
        )
        refused = _refused(target) - refused_before
        rss_after = rss_bytes()
        report = (
            f"{stats['frames']} frames on {stats['connections']} connections in "
            f"{stats['seconds']:.1f} s ({stats['frames'] / stats['seconds']:.0f} frames/s, "
            f"{stats['connections'] / stats['seconds']:.0f} connections/s), {refused} refused "
            f"by the node with {log.count} log records; RSS {rss_before / 2**20:.1f} MiB "
            f"before, peak {peak_rss / 2**20:.1f} MiB, {rss_after / 2**20:.1f} MiB after"
        )
        print(report)
        assert changes == [], f"leadership changed under the flood: {changes}; {report}"
        assert the_leader(elections) == (leader, term)
        # Not even a pre-vote: no follower ever thought the leader gone.
        assert _campaigns(elections) == campaigns_before
        assert stats["frames"] >= 0.5 * RATE * SECONDS, report
        assert refused >= stats["connections"] * 0.9, report
        assert peak_rss - rss_before < RSS_GROWTH_LIMIT, report
        # The flood reached the leader alone: the followers refused nothing.
        for node_id, transport in transports.items():
            if node_id != leader:
                assert _refused(transport) == 0
    finally:
        for election in elections.values():
            await election.close()


def _campaigns(elections: dict[str, Election]) -> dict[str, tuple[int, int]]:
    return {
        node_id: (e.metrics().pre_votes_started, e.metrics().elections_started)
        for node_id, e in elections.items()
    }


def _refused(transport: TcpTransport) -> int:
    m = transport.metrics
    return (
        m.bad_oversized
        + m.bad_undecodable
        + m.bad_unknown_kind
        + m.bad_field
        + m.bad_impersonation
        + m.handshakes_refused
    )

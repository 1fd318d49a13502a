"""A member of a real 3-node cluster removed while it was down learns it when it is back.

The leader tells a removed member only for an election timeout after the commit; a
member that is down (killed, or stopped with SIGSTOP) then misses it. Once it is back,
its pre-votes reach the members it knows, one of them answers with the committed
configuration that left it out, and the process logs that it was removed and exits 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

pytestmark = pytest.mark.slow

DEADLINE = 30.0
TIMINGS = ClusterTimings(
    election_timeout_ms=300,
    election_timeout_max_ms=600,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)
# A peer that cannot be reached is dialled again at least this often (backoff_max), and
# each failed dial drops what waited for it: once the leader has stopped telling the
# removed member, nothing from that time is left to reach it after a few of these.
REDIAL_SECONDS = 1.0
_NOT_CONNECTED = re.compile(
    r'^almost_raft_messages_dropped_total\{reason="not_connected"\} (\S+)$', re.M
)


def members(cluster: ProcessCluster, *action: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "almost_raft", "members", "--config"]
    return subprocess.run(
        [*command, str(cluster.config_path), *action],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
        check=False,
    )


def status_command(cluster: ProcessCluster) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "almost_raft", "status", "--config"]
    return subprocess.run(
        [*command, str(cluster.config_path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
        check=False,
    )


def wait_until_no_longer_told(cluster: ProcessCluster, leader: str) -> None:
    """Poll the leader's count of messages dropped for a peer it cannot reach (only the
    dead member) until it has stood still for a few redials."""
    seen: tuple[float, float] | None = None

    def settled() -> bool | None:
        nonlocal seen
        text = cluster.metrics(leader)
        match = None if text is None else _NOT_CONNECTED.search(text)
        if match is None:
            return None
        count, now = float(match.group(1)), time.monotonic()
        if seen is None or count != seen[0]:
            seen = (count, now)
            return None
        return True if now - seen[1] > 3 * REDIAL_SECONDS else None

    cluster.wait_for(settled, DEADLINE, "the leader to stop telling the removed member")


@pytest.mark.parametrize("down", ["killed", "stopped"])
def test_a_member_removed_while_down_learns_it_when_back_and_exits_0(down: str) -> None:
    with ProcessCluster(3, timings=TIMINGS, admin=True) as cluster:
        leader, term = cluster.wait_for_agreed_leader(deadline=DEADLINE)
        victim = next(node for node in cluster.ids if node != leader)
        if down == "killed":
            cluster.kill(victim)
        else:
            cluster.stop(victim)

        # Asked of the leader first: a stopped node's admin endpoint would take the
        # connection and keep the command waiting for its whole timeout.
        removed = members(cluster, "--node", leader, "remove", victim)
        assert removed.returncode == 0, removed.stderr + cluster.describe()
        wait_until_no_longer_told(cluster, leader)

        if down == "killed":
            cluster.restart(victim)
        else:
            cluster.cont(victim)
        code = cluster.wait_for(lambda: cluster.returncode(victim), DEADLINE, f"{victim} to exit")
        assert code == 0, cluster.describe()
        log = cluster.log_path(victim).read_text()
        assert "removed from the cluster: configuration v" in log, log[-3000:]
        assert f"does not hold {victim}; exiting" in log
        if down == "killed":
            # Nothing the leader sent is left to reach it: a member told it.
            assert re.search(
                rf"{victim}: removed from the cluster by configuration v\d+ \(term \d+\): "
                rf"[^\n]*\(told by n\d\); leaving",
                log,
            ), log[-3000:]
        # (A stopped process may still read what its kernel kept of the leader's last
        # heartbeats, and learn it from those.) The others kept their leader throughout.
        others = [node for node in cluster.ids if node != victim]
        assert cluster.agreed_leader(others) == (leader, term)
        # No longer a member, it is dialled only when a message waits for it, not for ever.
        for node in others:
            assert f"peer {victim} is dialled only when a message waits for it" in (
                cluster.log_path(node).read_text()
            ), node
        # What they hold, as /status and almost-raft status show it.
        answer = cluster.status(leader)
        assert answer is not None
        config = answer["configuration"]
        assert sorted(config["members"]) == sorted(others)
        assert (config["committed"], config["change_pending"]) == (True, False)
        assert config["term"] == term
        shown = status_command(cluster)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert (
            f"configuration v{config['version']} (made in term {term}), committed "
            f"(as leader {leader} holds it):"
        ) in shown.stdout

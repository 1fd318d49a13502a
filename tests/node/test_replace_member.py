"""Replacing a dead member of a real 3-node cluster while the others keep their leader."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

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


def members(cluster: ProcessCluster, *action: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "almost_raft", "members", "--config"]
    return subprocess.run(
        [*command, str(cluster.config_path), *action],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
        check=False,
    )


def test_a_dead_member_is_replaced_by_a_new_machine_while_the_leader_keeps_leading() -> None:
    with ProcessCluster(3, timings=TIMINGS, admin=True) as cluster:
        leader, term = cluster.wait_for_agreed_leader(deadline=DEADLINE)
        dead = next(node for node in cluster.ids if node != leader)
        killed_at = cluster.kill(dead)

        removed = members(cluster, "remove", dead)
        assert removed.returncode == 0, removed.stderr
        assert dead not in removed.stdout

        cluster.add_node("n4", leave_out=[dead])
        host, port = cluster.addresses["n4"]
        added = members(cluster, "add", "n4", f"{host}:{port}")
        assert added.returncode == 0, added.stderr + cluster.describe()
        assert "n4" in added.stdout
        assert "non-voter" not in added.stdout

        def everyone_follows() -> tuple[str, int] | None:
            return cluster.agreed_leader([n for n in cluster.ids if n != dead])

        assert cluster.wait_for(everyone_follows, DEADLINE, "n4 to follow the leader") == (
            leader,
            term,
        )
        status: dict[str, Any] | None = cluster.status("n4")
        assert status is not None
        listed = members(cluster, "list")
        assert listed.returncode == 0, listed.stderr
        assert f"leader {leader}" in listed.stdout
        assert dead not in listed.stdout
        # No election happened: from the kill on, every node named only this leader.
        later = [e for e in cluster.leader_events() if e.monotonic >= killed_at]
        assert {(e.leader, e.term) for e in later if e.node != "n4"} <= {(leader, term)}
        assert [(e.leader, e.term) for e in later if e.node == "n4"][-1] == (leader, term)

"""Exclusive leader commands on real processes: never two at once, whatever the fault.

Each node runs a command that stamps its start, a tick every 5 ms and its stop (on the
machine's CLOCK_BOOTTIME) into one shared file; two commands overlapped if one started
before another's last stamp. The faults are the two the old design could not survive: a
leader cut off from everyone while its command ignores SIGTERM, and the leader's node
process alone frozen by SIGSTOP while its command runs on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from almost_raft.chaos import LinkState, ProxyNetwork
from almost_raft.chaos._stamps import (
    STAMPING_COMMAND,
    Stamp,
    gaps,
    lives,
    overlaps,
    read_stamps,
)
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

pytestmark = pytest.mark.slow

DEADLINE = 20.0
TIMINGS = ClusterTimings(
    election_timeout_ms=300,
    election_timeout_max_ms=600,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)


def test_the_overlap_checker_finds_a_command_that_ran_on() -> None:
    stamps = [
        Stamp("start", "n1", 1, 10, 1.0),
        Stamp("tick", "n1", 1, 10, 2.0),
        Stamp("start", "n2", 2, 20, 1.9),  # n1's command still ticked at 2.0
        Stamp("tick", "n2", 2, 20, 3.0),
    ]
    assert len(overlaps(stamps)) == 1
    assert gaps(stamps) == [pytest.approx(-0.1)]
    clean = [*stamps[:2], Stamp("start", "n2", 2, 20, 2.1), stamps[3]]
    assert overlaps(clean) == []
    assert gaps(clean) == [pytest.approx(0.1)]


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[ProcessCluster, ProxyNetwork, Path]]:
    stamps = tmp_path / "stamps.txt"
    ids = [f"n{i}" for i in range(1, 4)]
    real: dict[str, tuple[str, int]] = {}
    with ProxyNetwork(ids, real.__getitem__, seed=1) as network:
        cluster = ProcessCluster(
            3,
            timings=TIMINGS,
            command=[sys.executable, "-c", STAMPING_COMMAND, str(stamps), "ignore-sigterm"],
            grace=10.0,
            peer_address=network.address,
        )
        with cluster:
            real.update(cluster.addresses)
            yield cluster, network, stamps


def _wait_for_command(cluster: ProcessCluster, path: Path, node: str, term: int) -> None:
    """Wait until ``node``'s command of ``term`` has run for a while.

    A while: any other command still alive then has stamped a tick after this one's
    start, so an overlap cannot hide behind the moment of the check.
    """
    cluster.wait_for(
        lambda: (
            True
            if any(
                life.node == node and life.term == term and life.last - life.start > 0.1
                for life in lives(read_stamps(path))
            )
            else None
        ),
        DEADLINE,
        f"the command of {node} in term {term}",
    )


def _successor(cluster: ProcessCluster, others: list[str], term: int) -> tuple[str, int]:
    return cluster.wait_for_agreed_leader(DEADLINE, above_term=term, nodes=others)


def test_a_leader_cut_off_with_a_command_that_ignores_sigterm_never_overlaps(
    proxied: tuple[ProcessCluster, ProxyNetwork, Path],
) -> None:
    cluster, network, path = proxied
    leader, term = cluster.wait_for_agreed_leader(DEADLINE)
    _wait_for_command(cluster, path, leader, term)
    others = [node for node in cluster.ids if node != leader]
    for other in others:
        network.set_state(leader, other, LinkState(cut=True))
        network.set_state(other, leader, LinkState(cut=True))
    new_leader, new_term = _successor(cluster, others, term)
    _wait_for_command(cluster, path, new_leader, new_term)
    stamps = read_stamps(path)
    assert overlaps(stamps) == []
    old = next(life for life in lives(stamps) if life.term == term)
    # It ignored SIGTERM, so the watchdog's SIGKILL at the lease's end stopped it.
    assert all(stamp.what != "stop" for stamp in stamps if stamp.pid == old.pid)
    network.heal_all()


def test_a_frozen_leader_node_does_not_leave_its_command_running(
    proxied: tuple[ProcessCluster, ProxyNetwork, Path],
) -> None:
    cluster, _, path = proxied
    leader, term = cluster.wait_for_agreed_leader(DEADLINE)
    _wait_for_command(cluster, path, leader, term)
    cluster.stop(leader)  # SIGSTOP of the node's process alone: its command runs on
    try:
        others = [node for node in cluster.ids if node != leader]
        new_leader, new_term = _successor(cluster, others, term)
        _wait_for_command(cluster, path, new_leader, new_term)
        assert overlaps(read_stamps(path)) == []
    finally:
        cluster.cont(leader)
    # Thawed, the old leader learns of the new term; still never two commands at once.
    cluster.wait_for_agreed_leader(DEADLINE, above_term=term)
    assert overlaps(read_stamps(path)) == []

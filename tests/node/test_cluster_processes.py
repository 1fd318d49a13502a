"""Clusters of real ``almost-raft run`` processes over TCP on 127.0.0.1.

Each test starts its own cluster on ports free at run time and polls for every condition
with a generous deadline, so a loaded machine is slower but not wrong.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from almost_raft import ElectionConfig
from almost_raft.node._cluster_config import ClusterConfig
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

pytestmark = pytest.mark.slow

DEADLINE = 20.0
# Short, but with six heartbeats per election timeout, so that a loaded machine does not
# depose a healthy leader while a test asserts that nothing changed.
TIMINGS = ClusterTimings(
    election_timeout_ms=300,
    election_timeout_max_ms=600,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)

# The leader command: it records its start and its exit (on SIGTERM) with the term it was
# given and its pid. The handler is installed before "start" is written, so every
# recorded start of a command stopped with SIGTERM has its exit.
RECORDING_COMMAND = """
import os, signal, sys
path, node, term = sys.argv[1], os.environ["ALMOST_RAFT_NODE_ID"], os.environ["ALMOST_RAFT_TERM"]
def record(what):
    with open(path, "a") as file:
        file.write(f"{what} {node} {term} {os.getpid()}\\n")
def stop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the node and its watchdog may both ask
    record("exit")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
record("start")
while True:
    signal.pause()
"""


@dataclasses.dataclass(frozen=True)
class Record:
    what: str
    node: str
    term: int
    pid: int


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        what, node, term, pid = line.split()
        records.append(Record(what, node, int(term), int(pid)))
    return records


def max_running_at_once(records: list[Record]) -> int:
    """The most commands ever running together, by the order they recorded starts and exits."""
    running: set[int] = set()
    most = 0
    for record in records:
        if record.what == "start":
            running.add(record.pid)
        else:
            running.discard(record.pid)
        most = max(most, len(running))
    return most


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie nobody reaped yet does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.fixture
def recorded_cluster(tmp_path: Path) -> Iterator[tuple[ProcessCluster, Path]]:
    record = tmp_path / "commands.txt"
    cluster = ProcessCluster(
        3,
        timings=TIMINGS,
        command=[sys.executable, "-c", RECORDING_COMMAND, str(record)],
        grace=2.0,
    )
    with cluster:
        yield cluster, record


def wait_for_record(cluster: ProcessCluster, path: Path, what: str, node: str, term: int) -> Record:
    def found() -> Record | None:
        for record in read_records(path):
            if (record.what, record.node, record.term) == (what, node, term):
                return record
        return None

    return cluster.wait_for(found, DEADLINE, f"{what} of the command of {node} in term {term}")


_HEARTBEATS_RECEIVED = re.compile(
    r'^almost_raft_messages_received_total\{kind="heartbeat"\} (\S+)$', re.MULTILINE
)


def heartbeats_received(cluster: ProcessCluster, node: str) -> float | None:
    """The heartbeats ``node`` has received, from its metrics; None if it did not answer."""
    text = cluster.metrics(node)
    match = None if text is None else _HEARTBEATS_RECEIVED.search(text)
    return None if match is None else float(match.group(1))


def wait_for_heartbeats_received(cluster: ProcessCluster, node: str) -> float:
    return cluster.wait_for(
        lambda: heartbeats_received(cluster, node), DEADLINE, f"the metrics of {node}"
    )


def wait_for_status(cluster: ProcessCluster, node: str, **expected: Any) -> dict[str, Any]:
    """Wait until ``node``'s status has the ``expected`` fields; a dict matches the
    status's object that has (at least) the same keys and values."""

    def same(value: Any, want: Any) -> bool:
        if isinstance(want, dict):
            return isinstance(value, dict) and all(value.get(k) == v for k, v in want.items())
        return bool(value == want)

    def matches() -> dict[str, Any] | None:
        status = cluster.status(node)
        if status is None or not all(same(status.get(k), v) for k, v in expected.items()):
            return None
        return status

    return cluster.wait_for(matches, DEADLINE, f"{node} to report {expected}")


@pytest.mark.parametrize("size", [3, 5])
def test_sigkill_of_the_leader_elects_a_new_one_and_the_restarted_node_rejoins(size: int) -> None:
    with ProcessCluster(size, timings=TIMINGS) as cluster:
        leader, term = cluster.wait_for_agreed_leader(DEADLINE)
        before = cluster.state(leader)
        assert before is not None
        assert before["term"] == term
        assert before["voted_for"] == leader

        cluster.kill(leader, signal.SIGKILL)
        assert cluster.pid(leader) is None
        new_leader, new_term = cluster.wait_for_agreed_leader(DEADLINE, above_term=term)
        assert new_leader != leader

        cluster.restart(leader)
        status = wait_for_status(cluster, leader, role="follower", leader=new_leader)
        # PreVote: the restarted node, which missed the election, did not force another.
        assert status["term"] == new_term
        assert cluster.wait_for_agreed_leader(DEADLINE) == (new_leader, new_term)
        after = cluster.state(leader)
        assert after is not None
        assert after["term"] >= before["term"]
        assert after["term"] == new_term


def test_a_stopped_leader_is_replaced_and_steps_down_when_it_runs_again(
    recorded_cluster: tuple[ProcessCluster, Path],
) -> None:
    cluster, record_path = recorded_cluster
    old, old_term = cluster.wait_for_agreed_leader(DEADLINE)
    old_command = wait_for_record(cluster, record_path, "start", old, old_term)

    cluster.stop(old)
    others = [node for node in cluster.ids if node != old]
    new, new_term = cluster.wait_for_agreed_leader(DEADLINE, nodes=others, above_term=old_term)
    assert new != old
    new_command = wait_for_record(cluster, record_path, "start", new, new_term)
    # Both commands run now: the frozen node cannot stop its own. Their terms tell a
    # fenced resource which one is current.
    assert new_command.term > old_command.term

    cluster.cont(old)
    wait_for_status(cluster, old, role="follower", leader=new, term=new_term)
    wait_for_record(cluster, record_path, "exit", old, old_term)
    # The command records its exit a moment before it has exited.
    wait_for_status(
        cluster,
        old,
        role="follower",
        leader=new,
        term=new_term,
        command={"running": False, "pid": None, "term": old_term},
    )
    assert cluster.wait_for(
        lambda: True if not pid_exists(old_command.pid) else None, DEADLINE, "the old command"
    )
    assert cluster.wait_for_agreed_leader(DEADLINE) == (new, new_term)
    command = (cluster.status(new) or {})["command"]
    assert command["pid"] == new_command.pid
    assert command["starts"] >= 1
    assert command["exits"] == 0
    assert "almost_raft_command_running 1.0" in (cluster.metrics(new) or "")


def test_exactly_one_command_runs_at_a_time_across_the_cluster(
    recorded_cluster: tuple[ProcessCluster, Path],
) -> None:
    cluster, record_path = recorded_cluster
    leader, term = cluster.wait_for_agreed_leader(DEADLINE)
    first = wait_for_record(cluster, record_path, "start", leader, term)

    # Steady state, checked many times rather than once: until every follower has heard
    # enough heartbeats to outlast two of its longest election timeouts.
    rounds = 2 * TIMINGS.election_timeout_max_ms // TIMINGS.heartbeat_interval_ms
    followers = [node for node in cluster.ids if node != leader]
    targets = {node: wait_for_heartbeats_received(cluster, node) + rounds for node in followers}
    end = time.monotonic() + DEADLINE
    while not all((heartbeats_received(cluster, node) or 0) >= targets[node] for node in followers):
        assert time.monotonic() < end, (
            f"waited {DEADLINE}s for {rounds} heartbeats at each follower"
        )
        running = {}
        terms = set()
        for node in cluster.ids:
            status = cluster.status(node)
            assert status is not None
            terms.add(status["term"])
            if status["command"]["running"]:
                running[node] = status["command"]["pid"]
        assert running == {leader: first.pid}
        assert terms == {term}
        time.sleep(0.05)
    assert read_records(record_path) == [first]
    assert pid_exists(first.pid)

    # A clean shutdown keeps the node leading until its command has exited, so the next
    # leader's command cannot start before.
    cluster.kill(leader, signal.SIGTERM)
    second_leader, second_term = cluster.wait_for_agreed_leader(DEADLINE, above_term=term)
    second = wait_for_record(cluster, record_path, "start", second_leader, second_term)
    records = read_records(record_path)
    assert records[:3] == [first, dataclasses.replace(first, what="exit"), second]
    assert max_running_at_once(records) == 1

    # SIGKILL gives the node no chance to stop its command; the kernel kills it instead.
    cluster.restart(leader)
    wait_for_status(cluster, leader, role="follower", leader=second_leader)
    cluster.kill(second_leader, signal.SIGKILL)
    cluster.wait_for(
        lambda: True if not pid_exists(second.pid) else None,
        DEADLINE,
        "the command of a SIGKILLed leader to die with it",
    )
    third_leader, third_term = cluster.wait_for_agreed_leader(DEADLINE, above_term=second_term)
    third = wait_for_record(cluster, record_path, "start", third_leader, third_term)
    alive = [r.pid for r in read_records(record_path) if r.what == "start" and pid_exists(r.pid)]
    assert alive == [third.pid]


def test_an_exception_still_ends_every_process_even_a_stopped_one_and_frees_the_ports() -> None:
    cluster = ProcessCluster(3, timings=TIMINGS)
    pids: list[int | None] = []

    def fail_with_a_stopped_node() -> None:
        with cluster:
            leader, _ = cluster.wait_for_agreed_leader(DEADLINE)
            cluster.stop(leader)
            pids.extend(cluster.pid(node) for node in cluster.ids)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_with_a_stopped_node()
    assert len(pids) == 3
    assert all(pid is not None and not pid_exists(pid) for pid in pids)
    assert cluster.directory is not None
    assert not cluster.directory.exists()
    # Nothing listens any more (SO_REUSEADDR as any server sets it, since connections the
    # nodes closed may linger in TIME_WAIT; binding fails only while a listener is left).
    for address in [*cluster.addresses.values(), *cluster.http.values()]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen()


def _cluster_file_election(timings: ClusterTimings) -> ElectionConfig:
    cluster = ProcessCluster(3, timings=timings)
    for index, node in enumerate(cluster.ids):
        cluster.addresses[node] = ("127.0.0.1", 7000 + index)
        cluster.http[node] = ("127.0.0.1", 8000 + index)
    raw = tomllib.loads(cluster._cluster_file())
    raw["state_dir"] = "/nonexistent"
    return ClusterConfig.from_dict(raw).election


def test_the_cluster_file_carries_the_timings_it_was_given() -> None:
    short = {"election_timeout_ms": 12, "election_timeout_max_ms": 24, "heartbeat_interval_ms": 4}
    election = _cluster_file_election(ClusterTimings(**short, leader_down_delay_ms=3))
    assert (election.election_timeout, election.election_timeout_max) == (0.012, 0.024)
    assert (election.heartbeat_interval, election.leader_down_step) == (0.004, 0.003)
    # Left out, the nodes' default applies: a fifth of this short timeout.
    assert _cluster_file_election(ClusterTimings(**short)).leader_down_step == 0.012 / 5

"""An exclusive leader command on a cluster whose links delay and lose packets.

    .venv/bin/python benchmarks/lease_links.py                     # as root; about 2 minutes
    .venv/bin/python benchmarks/lease_links.py --seconds 60 --loss 0 --loss 0.01 --loss 0.05
    .venv/bin/python benchmarks/lease_links.py --faults 25 --loss 0 --loss 0.05   # minutes
    .venv/bin/python benchmarks/lease_links.py --members 24 --loss 0 --loss 0.05  # minutes

Five ``almost-raft run`` processes, each in a network namespace of its own
(``almost_raft.chaos.NamespaceNetwork``, kernel TCP), with an exclusive leader command
(the default: it runs only under a lease, and a watchdog stops it at the lease's end),
election timeouts of 150-300 ms and 50 ms heartbeats, and every link delaying each packet
by ``--delay`` ± ``--jitter`` ms and losing a share ``--loss`` of them. Nothing fails on
purpose: for ``--seconds`` it counts how often the leader changed and how often the
command was started, and stamps each start. Among the stamps, two commands that ran at
once on different nodes would be a broken lease; their number is printed too.

A lease lasts the election timeout less the clock-drift allowance and a margin (141 ms
here) from the time its heartbeat round left; over links that lose packets, TCP holds the
answers behind a lost one for about two heartbeat intervals and a round trip, so a lease
can run out while the node goes on leading. The watchdog then stops the command, and it
starts again under the next lease; the leader does not change for it.

With ``--faults N`` it injects N faults instead, one at a time, in turn: SIGKILL of the
leader's node process, SIGSTOP of it, SIGTERM (a hand-over), the leader's links all cut,
and a follower's links all cut. Each trial waits for an agreed leader and 1.5 s more,
injects the fault, waits for a command to start on another node (up to 10 s; a cut
follower gets 2 s, in which no other node should start one), and then undoes the fault
(restart, SIGCONT, links as before) and waits for the cluster to agree again. It reports,
per kind, the time from the fault to the next command's start, how many trials changed the
term, how long agreement took after the fault was undone, and the overlaps over the run.

With ``--members N`` it changes the membership N times instead, through ``almost-raft
members`` (each node has an admin endpoint): in turn it removes the leader (which hands
over) or a follower, every third time while yet another member is frozen by SIGSTOP,
waits for the removed node to exit by itself, starts it again and adds it back. It
reports, per kind, how many changes succeeded and how long each command took (a Python
start-up included), and over the run the elections, the leader-per-term violations the
chaos checker finds in the nodes' logs, and the overlaps.

Prints a table and writes ``benchmarks/results/lease_links.json`` (``lease_faults.json``
for ``--faults``, ``lease_members.json`` for ``--members``).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import machine, table, write_json

from almost_raft.chaos import LinkState, NamespaceNetwork, check, read_events
from almost_raft.chaos._stamps import (
    STAMPING_COMMAND,
    CommandLife,
    lives,
    overlaps,
    read_stamps,
)
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

TIMINGS = ClusterTimings(
    election_timeout_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=50
)
FAULTS = ("kill", "stop", "term", "cut leader", "cut follower")
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


@contextlib.contextmanager
def _cluster_on(
    links: LinkState, *, admin: bool = False
) -> Iterator[tuple[ProcessCluster, NamespaceNetwork, Path]]:
    """Five nodes in namespaces whose links all do ``links``, each with the stamping
    command as its exclusive leader command (and an admin endpoint, with ``admin``);
    also the file the commands stamp."""
    ids = [f"n{i}" for i in range(1, 6)]
    with tempfile.TemporaryDirectory(prefix="lease-links-") as scratch:
        stamps = Path(scratch) / "stamps"
        command = [sys.executable, "-c", STAMPING_COMMAND, str(stamps)]
        with NamespaceNetwork(ids, seed=1) as namespaces:
            namespaces.set_all(links)
            with ProcessCluster(
                5,
                timings=TIMINGS,
                host=namespaces.address,
                spawn_prefix=namespaces.exec_prefix,
                command=command,
                admin=admin,
            ) as cluster:
                yield cluster, namespaces, stamps


def measure(delay_ms: float, jitter_ms: float, loss: float, seconds: float) -> dict[str, Any]:
    """One cluster, left alone for ``seconds`` on links of the given kind."""
    links = LinkState(delay=delay_ms / 1000, jitter=jitter_ms / 1000, loss=loss)
    with _cluster_on(links) as (cluster, _, stamps):
        first = cluster.wait_for_agreed_leader(deadline=30.0)
        starts_before = len(lives(read_stamps(stamps)))
        time.sleep(seconds)
        last = cluster.agreed_leader(cluster.ids)
        stamped = read_stamps(stamps)
    return {
        **_links(delay_ms, jitter_ms, loss),
        "seconds": seconds,
        "first_leader": list(first),
        "last_leader": None if last is None else list(last),
        "leader_changes": None if last is None else last[1] - first[1],
        "command_starts": len(lives(stamped)) - starts_before,
        "overlaps": overlaps(stamped),
    }


def measure_faults(delay_ms: float, jitter_ms: float, loss: float, trials: int) -> dict[str, Any]:
    """One cluster on links of the given kind, ``trials`` faults in turn (see above)."""
    links = LinkState(delay=delay_ms / 1000, jitter=jitter_ms / 1000, loss=loss)
    results: list[dict[str, Any]] = []
    with _cluster_on(links) as (cluster, namespaces, stamps):
        ids = cluster.ids
        for index in range(trials):
            kind = FAULTS[index % len(FAULTS)]
            leader, term = cluster.wait_for_agreed_leader(deadline=30.0)
            time.sleep(1.5)
            seen = len(lives(read_stamps(stamps)))
            victim = (
                leader if kind != "cut follower" else next(node for node in ids if node != leader)
            )
            at = time.clock_gettime(_BOOTTIME)
            if kind == "kill":
                cluster.kill(victim)
            elif kind == "stop":
                cluster.stop(victim)
            elif kind == "term":
                cluster.kill(victim, signal.SIGTERM)
            else:
                namespaces.isolate(victim)
            started = _next_start(stamps, seen, leader, 2.0 if victim != leader else 10.0)
            time.sleep(1.0)
            if kind == "stop":
                cluster.cont(victim)
            elif kind in ("kill", "term"):
                _wait_for_exit(cluster, victim)
                cluster.restart(victim)
            else:
                namespaces.set_all(links)
            undone = time.monotonic()
            after = cluster.wait_for_agreed_leader(deadline=30.0)
            results.append(
                {
                    "kind": kind,
                    "leader_before": [leader, term],
                    "leader_after": list(after),
                    "next_command_after_s": None if started is None else started.start - at,
                    "next_command_node": None if started is None else started.node,
                    "agreed_after_undo_s": time.monotonic() - undone,
                }
            )
        stamped = read_stamps(stamps)
    return {
        **_links(delay_ms, jitter_ms, loss),
        "trials": results,
        "command_starts": len(lives(stamped)),
        "overlaps": overlaps(stamped),
    }


def measure_members(delay_ms: float, jitter_ms: float, loss: float, rounds: int) -> dict[str, Any]:
    """One cluster on links of the given kind, ``rounds`` removals and additions back."""
    links = LinkState(delay=delay_ms / 1000, jitter=jitter_ms / 1000, loss=loss)
    rng = random.Random(1)
    changes: list[dict[str, Any]] = []
    with _cluster_on(links, admin=True) as (cluster, _, stamps):
        for index in range(rounds):
            leader, _term = cluster.wait_for_agreed_leader(deadline=30.0)
            time.sleep(1.0)
            others = [node for node in cluster.ids if node != leader]
            # The leader every other round (a hand-over), else a follower.
            victim = leader if index % 2 == 0 else rng.choice(others)
            # Every third change runs while yet another member is frozen.
            frozen = rng.choice([n for n in others if n != victim]) if index % 3 == 1 else None
            if frozen is not None:
                cluster.stop(frozen)
            removed = _members(cluster, "remove", victim)
            if frozen is not None:
                cluster.cont(frozen)
            # A removed member exits by itself once it knows.
            try:
                _wait_for_exit(cluster, victim)
                exited = True
            except TimeoutError:
                exited = False
                cluster.kill(victim)
                _wait_for_exit(cluster, victim)
            cluster.restart(victim)
            host, port = cluster.addresses[victim]
            added = _members(cluster, "add", victim, f"{host}:{port}")
            cluster.wait_for_agreed_leader(deadline=30.0)
            changes.append(
                {
                    "victim": victim,
                    "was_leader": victim == leader,
                    "frozen": frozen,
                    "removed": removed,
                    "exited_by_itself": exited,
                    "added": added,
                }
            )
        stamped = read_stamps(stamps)
        events = [
            event for node in cluster.ids for event in read_events(cluster.log_path(node), node)
        ]
    checked = check(events)
    return {
        **_links(delay_ms, jitter_ms, loss),
        "changes": changes,
        "elections": checked.elections,
        "violations": [str(violation) for violation in checked.violations],
        "command_starts": len(lives(stamped)),
        "overlaps": overlaps(stamped),
    }


def _members(cluster: ProcessCluster, *action: str) -> dict[str, Any]:
    """Run ``almost-raft members ACTION`` against the cluster; its status and duration."""
    started = time.monotonic()
    members = [sys.executable, "-m", "almost_raft", "members", "--timeout", "20"]
    done = subprocess.run(
        [*members, "--config", str(cluster.config_path), *action],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return {"status": done.returncode, "seconds": time.monotonic() - started}


def _member_rows(run: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    links = f"{run['delay_ms']:g} ± {run['jitter_ms']:g} ms, {run['loss']:.0%} loss"
    for what, was_leader in (("remove the leader", True), ("remove a follower", False)):
        for step in ("removed", "added"):
            done = [c[step] for c in run["changes"] if c["was_leader"] == was_leader]
            if not done:
                continue
            seconds = [d["seconds"] * 1000 for d in done if d["status"] == 0]
            rows.append(
                [
                    links,
                    what if step == "removed" else "  and add it back",
                    f"{len(seconds)} of {len(done)}",
                    f"{statistics.median(seconds):.0f}" if seconds else "-",
                    f"{max(seconds):.0f}" if seconds else "-",
                ]
            )
    return rows


def _links(delay_ms: float, jitter_ms: float, loss: float) -> dict[str, float]:
    """What a run's links did, as its results record it."""
    return {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss": loss}


def _wait_for_exit(cluster: ProcessCluster, node: str) -> None:
    deadline = time.monotonic() + 10.0
    while cluster.pid(node) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node} did not exit within 10 s")
        time.sleep(0.01)


def _next_start(stamps: Path, seen: int, leader: str, wait: float) -> CommandLife | None:
    """The first command started on a node other than ``leader`` since the first ``seen``
    lives, waiting up to ``wait`` seconds for one."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for life in lives(read_stamps(stamps))[seen:]:
            if life.node != leader:
                return life
        time.sleep(0.01)
    return None


def _fault_rows(run: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for kind in FAULTS:
        trials = [trial for trial in run["trials"] if trial["kind"] == kind]
        if not trials:
            continue
        times = [
            t["next_command_after_s"] * 1000
            for t in trials
            if t["next_command_after_s"] is not None
        ]
        rows.append(
            [
                f"{run['delay_ms']:g} ± {run['jitter_ms']:g} ms, {run['loss']:.0%} loss",
                kind,
                len(trials),
                f"{len(times)} of {len(trials)}",
                f"{statistics.median(times):.0f}" if times else "-",
                f"{max(times):.0f}" if times else "-",
                sum(t["leader_after"][1] != t["leader_before"][1] for t in trials),
                f"{max(t['agreed_after_undo_s'] for t in trials):.2f}",
            ]
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--delay", type=float, default=20.0, help="one way, ms")
    parser.add_argument("--jitter", type=float, default=10.0, help="ms")
    parser.add_argument(
        "--loss", type=float, action="append", help="share of packets lost (repeatable)"
    )
    parser.add_argument("--faults", type=int, default=0, help="inject this many faults")
    parser.add_argument(
        "--members", type=int, default=0, help="make this many membership changes instead"
    )
    args = parser.parse_args()
    if (reason := NamespaceNetwork.unavailable_reason()) is not None:
        print(f"network namespaces are not available: {reason}")
        return 2
    losses = args.loss if args.loss else [0.0, 0.05]
    if args.members:
        runs = [measure_members(args.delay, args.jitter, loss, args.members) for loss in losses]
        header = ["links", "change", "succeeded", "median ms", "max ms"]
        print(table(header, [row for run in runs for row in _member_rows(run)]))
        for run in runs:
            print(
                f"{run['loss']:.0%} loss: {run['elections']} elections, "
                f"{len(run['violations'])} violations, {run['command_starts']} command starts, "
                f"{len(run['overlaps'])} overlaps"
            )
        print(f"wrote {write_json('lease_members', {'machine': machine(), 'runs': runs})}")
        return 0
    if args.faults:
        runs = [measure_faults(args.delay, args.jitter, loss, args.faults) for loss in losses]
        header = [
            "links",
            "fault",
            "trials",
            "another node's command started",
            "after, median ms",
            "max ms",
            "term changed",
            "agreed after undo, max s",
        ]
        print(table(header, [row for run in runs for row in _fault_rows(run)]))
        print("overlapping commands:", ", ".join(str(len(run["overlaps"])) for run in runs))
        print(f"wrote {write_json('lease_faults', {'machine': machine(), 'runs': runs})}")
        return 0
    results = [measure(args.delay, args.jitter, loss, args.seconds) for loss in losses]
    rows = [
        [
            f"{r['delay_ms']:g} ± {r['jitter_ms']:g} ms, {r['loss']:.0%} loss",
            r["seconds"],
            "-" if r["leader_changes"] is None else r["leader_changes"],
            r["command_starts"],
            len(r["overlaps"]),
        ]
        for r in results
    ]
    print(table(["links", "seconds", "terms gone by", "command starts", "overlaps"], rows))
    print(f"wrote {write_json('lease_links', {'machine': machine(), 'runs': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Membership changes on a healthy 5-node cluster: request to commit, and leaderless time.

    .venv/bin/python benchmarks/membership.py --trials 20    # about a minute
    .venv/bin/python benchmarks/membership.py --quick        # a few seconds

Five elections in this process talk over TCP on 127.0.0.1 and keep their state in
state files (each save is an fdatasync), with LAN timings: election timeout 150-300 ms,
heartbeat 50 ms. A sixth node is up but not a member. Each trial asks the leader to

- add the sixth node (it joins as a non-voter, then is promoted: two commits),
- remove it again (one commit),
- remove the leader itself (commit, hand-over, and a new leader elected),

and times each from the request to the moment the awaitable returns (committed), and,
for the last, until every remaining member knows the new leader. "Leaderless" is the
longest time any member knew no leader while the change ran: the target is none at
all for the first two, and no more than a hand-over for the third. A removed leader is
added back (and the cluster's leader settles) before the next trial. Writes
``benchmarks/results/membership.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from _common import machine, summarize, table, write_json

from almost_raft import Election, ElectionConfig, FileStore, TcpTransport

CONFIG = ElectionConfig(election_timeout=0.15, election_timeout_max=0.3, heartbeat_interval=0.05)
MEMBERS = ["n1", "n2", "n3", "n4", "n5"]
SPARE = "n6"


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


class Watch:
    """Records the longest time one of ``watched`` knew no leader while the watch was on."""

    def __init__(self, elections: dict[str, Election], watched: list[str]) -> None:
        self.elections = {node: elections[node] for node in watched}
        self.since: dict[str, float | None] = {}
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample(time.perf_counter())

    def _sample(self, now: float) -> None:
        for node, election in self.elections.items():
            status = election.status()
            start = self.since.get(node)
            if status.leader_id is None:
                if start is None:
                    self.since[node] = now
                else:
                    self.longest = max(self.longest, now - start)
            elif start is not None:
                self.longest = max(self.longest, now - start)
                self.since[node] = None

    async def _poll(self) -> None:
        while True:
            self._sample(time.perf_counter())
            await asyncio.sleep(0.001)


async def agreed_leader(elections: dict[str, Election], members: list[str]) -> str:
    while True:
        views = {elections[node].status().leader_id for node in members}
        if len(views) == 1 and None not in views:
            leader = views.pop()
            assert leader is not None
            if elections[leader].status().is_leader:
                return leader
        await asyncio.sleep(0.001)


async def timed(change: Awaitable[Any]) -> float:
    start = time.perf_counter()
    await asyncio.wait_for(change, 20)
    return time.perf_counter() - start


async def run(trials: int, state_dir: Path) -> dict[str, Any]:
    nodes = [*MEMBERS, SPARE]
    ports = dict(zip(nodes, free_ports(len(nodes)), strict=True))
    elections: dict[str, Election] = {}
    for node in nodes:
        peers = {p: ("127.0.0.1", ports[p]) for p in nodes if p != node}
        transport = TcpTransport(listen=("127.0.0.1", ports[node]), peers=peers, cluster_id="bench")
        store = FileStore(state_dir / f"{node}.state", node_id=node, cluster_id="bench")
        elections[node] = Election(
            node,
            [m for m in MEMBERS if m != node],
            transport,
            config=CONFIG,
            store=store,
            rng=random.Random(node),
        )
    # The spare starts from the members' list too, as a new machine would.
    for election in elections.values():
        await election.start()
    results: dict[str, list[float]] = {
        "add (non-voter, then promoted)": [],
        "remove a follower": [],
        "remove the leader (commit)": [],
        "remove the leader (new leader known)": [],
    }
    leaderless: dict[str, list[float]] = {"add": [], "remove a follower": [], "remove leader": []}
    members = list(MEMBERS)
    try:
        for _ in range(trials):
            leader = await agreed_leader(elections, members)
            await asyncio.sleep(0.2)
            async with Watch(elections, members) as watch:
                results["add (non-voter, then promoted)"].append(
                    await timed(elections[leader].add_member(SPARE))
                )
            leaderless["add"].append(watch.longest)
            async with Watch(elections, members) as watch:
                results["remove a follower"].append(
                    await timed(elections[leader].remove_member(SPARE))
                )
            leaderless["remove a follower"].append(watch.longest)
            # The spare heard its removal and left: start it again for the next trial.
            await elections[SPARE].close()
            elections[SPARE] = restart(SPARE, nodes, ports, state_dir, fresh=True)
            await elections[SPARE].start()
            await asyncio.sleep(0.2)
            remaining = [m for m in members if m != leader]
            async with Watch(elections, remaining) as watch:
                start = time.perf_counter()
                await asyncio.wait_for(elections[leader].remove_member(leader), 20)
                results["remove the leader (commit)"].append(time.perf_counter() - start)
                await agreed_leader(elections, remaining)
                results["remove the leader (new leader known)"].append(time.perf_counter() - start)
            leaderless["remove leader"].append(watch.longest)
            # Put the removed machine back, as a new member with an empty disk.
            await elections[leader].close()
            elections[leader] = restart(leader, nodes, ports, state_dir, fresh=True)
            await elections[leader].start()
            new_leader = await agreed_leader(elections, remaining)
            await asyncio.wait_for(elections[new_leader].add_member(leader), 20)
    finally:
        for election in elections.values():
            await election.close()
    return {"commit": results, "leaderless": leaderless}


def restart(
    node: str, nodes: list[str], ports: dict[str, int], state_dir: Path, *, fresh: bool
) -> Election:
    path = state_dir / f"{node}.state"
    if fresh:
        for leftover in (path, path.with_name(path.name + ".lock")):
            leftover.unlink(missing_ok=True)
    peers = {p: ("127.0.0.1", ports[p]) for p in nodes if p != node}
    transport = TcpTransport(listen=("127.0.0.1", ports[node]), peers=peers, cluster_id="bench")
    return Election(
        node,
        [m for m in MEMBERS if m != node],
        transport,
        config=CONFIG,
        store=FileStore(path, node_id=node, cluster_id="bench"),
        rng=random.Random(f"{node}-again"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 trials")
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    info = machine()
    print(
        f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_at_start']}; {trials} trials"
    )
    with tempfile.TemporaryDirectory(prefix="almost-raft-membership-") as directory:
        measured = asyncio.run(run(trials, Path(directory)))
    rows = []
    summary: dict[str, Any] = {"commit": {}, "leaderless": {}}
    for label, values in measured["commit"].items():
        stats = summarize(values)
        summary["commit"][label] = stats
        rows.append([label, stats["median_ms"], stats["p90_ms"], stats["max_ms"]])
    print()
    print(table(["request to", "median ms", "p90 ms", "max ms"], rows))
    rows = []
    for label, values in measured["leaderless"].items():
        stats = summarize(values)
        summary["leaderless"][label] = stats
        rows.append([label, stats["median_ms"], stats["max_ms"]])
    print()
    print(table(["longest leaderless", "median ms", "max ms"], rows))
    path = write_json(
        "membership",
        {
            "machine": info,
            "config": {"election_timeout": [0.15, 0.3], "heartbeat_interval": 0.05},
            "trials": trials,
            "summary": summary,
            "samples_s": measured,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

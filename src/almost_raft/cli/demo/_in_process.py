"""``almost-raft demo``: a local cluster that elects a leader and fails over, live.

The in-process demo runs every node in this process on the in-memory network (with a
little random latency), kills the leader several times and restarts it, and prints a
timeline and a table of failover times. Nothing here is simulated time: the numbers are
what the asyncio runtime really did on this machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from collections.abc import Callable
from typing import TextIO

from ...core._config import ElectionConfig
from ...core._outputs import LeaderChange
from ...runtime._election import Election
from ...store._store import MemoryStore
from ...transport._faults import NetworkFaults
from ...transport._memory import InMemoryNetwork
from ._report import Failover, Timeline, print_summary

__all__ = ["DemoOptions", "Failover", "run_in_process_demo"]

DEMO_CONFIG = ElectionConfig(
    election_timeout=0.15, election_timeout_max=0.3, heartbeat_interval=0.05, message_timeout=0.1
)


@dataclasses.dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo does: how many nodes, how many leader kills, which seed."""

    nodes: int = 5
    kills: int = 4
    seed: int | None = None
    steady_time: float = 1.0
    deadline: float = 10.0


class _Cluster:
    """The demo's nodes, each an `Election` on one in-memory network."""

    def __init__(self, size: int, rng: random.Random, clock: Callable[[], float]) -> None:
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        self.network = InMemoryNetwork(
            NetworkFaults(random.Random(rng.random()), delay=(0.0005, 0.002))
        )
        self.stores = {node: MemoryStore() for node in self.ids}
        self.elections: dict[str, Election] = {}
        self.views: dict[str, LeaderChange] = {}
        self.first_leader_seen: dict[tuple[str, int], float] = {}
        self.changed = asyncio.Event()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._rng = rng
        self._clock = clock

    async def start(self, node: str) -> None:
        election = Election(
            node,
            [peer for peer in self.ids if peer != node],
            self.network.transport(node),
            config=DEMO_CONFIG,
            store=self.stores[node],
            rng=random.Random(self._rng.random()),
        )
        await election.start()
        self.elections[node] = election
        self._watchers[node] = asyncio.create_task(self._watch(node, election))

    async def kill(self, node: str) -> None:
        """Stop a node abruptly: no goodbye, as if its process died."""
        self._watchers.pop(node).cancel()
        self.views.pop(node, None)
        await self.elections.pop(node).close(hand_over=False)

    async def close(self) -> None:
        for node in list(self.elections):
            await self.kill(node)

    async def _watch(self, node: str, election: Election) -> None:
        async for change in election.leadership_changes():
            self.views[node] = change
            if change.leader_id is not None:
                self.first_leader_seen.setdefault((change.leader_id, change.term), self._clock())
            self.changed.set()

    def agreed_leader(self) -> LeaderChange | None:
        """The leader every live node knows, if they all know the same one."""
        views = {self.views.get(node) for node in self.elections}
        if len(views) == 1:
            (view,) = views
            if view is not None and view.leader_id is not None:
                return view
        return None

    async def wait_for(
        self, condition: Callable[[], LeaderChange | None], deadline: float
    ) -> LeaderChange:
        async with asyncio.timeout(deadline):
            while (found := condition()) is None:
                self.changed.clear()
                await self.changed.wait()
            return found


async def run_in_process_demo(options: DemoOptions, out: TextIO | None = None) -> list[Failover]:
    """Run the in-process demo, printing its timeline to ``out``; return the failovers."""
    out = sys.stdout if out is None else out
    rng = random.Random(options.seed)
    timeline = Timeline(out)
    clock, say = timeline.clock, timeline.say

    cluster = _Cluster(options.nodes, rng, clock)
    low, high = DEMO_CONFIG.election_timeout_range
    say(
        f"starting {options.nodes} nodes ({', '.join(cluster.ids)}) on an in-memory network; "
        f"election timeout {low * 1000:.0f}-{high * 1000:.0f} ms, "
        f"heartbeat {DEMO_CONFIG.heartbeat_interval * 1000:.0f} ms"
    )
    failovers: list[Failover] = []
    try:
        for node in cluster.ids:
            await cluster.start(node)
        leader = await cluster.wait_for(cluster.agreed_leader, options.deadline)
        say(f"{leader.leader_id} is leader of term {leader.term}; all {options.nodes} nodes agree")
        for _ in range(options.kills):
            await asyncio.sleep(options.steady_time)
            old = await cluster.wait_for(cluster.agreed_leader, options.deadline)
            assert old.leader_id is not None
            killed_at = clock()
            say(f"killing leader {old.leader_id} (term {old.term})")
            await cluster.kill(old.leader_id)

            def new_leader(old: LeaderChange = old) -> LeaderChange | None:
                agreed = cluster.agreed_leader()
                return agreed if agreed is not None and agreed.term > old.term else None

            new = await cluster.wait_for(new_leader, options.deadline)
            assert new.leader_id is not None
            elected = cluster.first_leader_seen[(new.leader_id, new.term)] - killed_at
            failover = Failover(
                old.leader_id, old.term, new.leader_id, new.term, elected, clock() - killed_at
            )
            failovers.append(failover)
            say(
                f"{new.leader_id} is leader of term {new.term}: failover "
                f"{failover.agreed_after * 1000:.0f} ms (first known after "
                f"{failover.elected_after * 1000:.0f} ms)"
            )
            await cluster.start(old.leader_id)
            say(f"restarted {old.leader_id}; it keeps its term and vote from its store")
        await asyncio.sleep(min(options.steady_time, 0.5))
        final = cluster.agreed_leader()
        if final is not None:
            say(
                f"{final.leader_id} is still leader of term {final.term}: "
                "the restarted nodes rejoined without deposing it"
            )
    finally:
        await cluster.close()
    print_summary(failovers, out)
    return failovers

"""Wiring for runtime tests: a cluster of Elections on one in-memory network."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ParamSpec

from almost_raft import (
    Election,
    ElectionConfig,
    InMemoryNetwork,
    MemoryStore,
    NetworkFaults,
    Store,
    Transport,
)
from helpers.transport import eventually

# Small timeouts keep the tests fast; the heartbeat stays well under the timeout so a
# busy test machine does not depose healthy leaders.
FAST = ElectionConfig(
    election_timeout=0.08, heartbeat_interval=0.01, message_timeout=0.05, election_timeout_max=0.16
)
#: Heartbeat rounds of FAST in its shortest election timeout.
ROUNDS_PER_TIMEOUT = round(FAST.election_timeout / FAST.heartbeat_interval)

P = ParamSpec("P")


def run_async(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test in a fresh event loop; fail it if it leaves tasks running."""

    @functools.wraps(test)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        async def main() -> None:
            await test(*args, **kwargs)
            leftover = asyncio.all_tasks() - {asyncio.current_task()}
            assert not leftover, f"tasks left running: {leftover}"

        asyncio.run(main())

    return wrapper


#: How long a poll waits for a condition before the test fails. Generous, because a
#: loaded machine is slow, and a passing test returns as soon as the condition holds.
DEADLINE = 10.0


async def wait_until(
    condition: Callable[[], bool], timeout: float = DEADLINE, what: str = "condition"
) -> None:
    """Poll ``condition`` every few milliseconds; fail the test if it stays false."""
    await eventually(condition, what, timeout)


class Cluster:
    """Elections on one in-memory network; ``ids`` are the members, in order."""

    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        config: ElectionConfig = FAST,
        faults: NetworkFaults | None = None,
    ) -> None:
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        self.rng = random.Random(seed)
        self.config = config
        self.network = InMemoryNetwork(
            faults if faults is not None else NetworkFaults(random.Random(seed))
        )
        self.stores: dict[str, Store] = {node: MemoryStore() for node in self.ids}
        self.elections: dict[str, Election] = {}

    def build(self, node: str, transport: Transport | None = None) -> Election:
        """A new, not yet started Election for ``node`` with its own store."""
        return Election(
            node,
            [peer for peer in self.ids if peer != node],
            transport if transport is not None else self.network.transport(node),
            config=self.config,
            store=self.stores[node],
            rng=random.Random(self.rng.random()),
        )

    async def start(self, nodes: Iterable[str] | None = None) -> None:
        for node in self.ids if nodes is None else nodes:
            election = self.build(node)
            await election.start()
            self.elections[node] = election

    async def stop(self, node: str) -> None:
        await self.elections.pop(node).close()

    async def close(self) -> None:
        for node in list(self.elections):
            await self.stop(node)

    def leaders(self) -> list[str]:
        return [node for node, e in self.elections.items() if e.status().is_leader]

    def agreed_leader(self) -> str | None:
        """The leader every running node knows, if exactly one leads and all agree."""
        leaders = self.leaders()
        if len(leaders) != 1:
            return None
        views = {e.status().leader_id for e in self.elections.values()}
        return leaders[0] if views == {leaders[0]} else None

    async def wait_for_heartbeats(self, leader: str, rounds: int) -> None:
        """Wait until ``leader`` has sent ``rounds`` more heartbeats to each peer, or has
        stopped leading.

        What a test waits for before it asserts that nothing changed meanwhile: a
        follower's timer runs out only if heartbeats stop, and a loaded machine that
        slows the rounds slows the timers as much. In a steady cluster a leader's sends
        are its heartbeats, so they count them.
        """
        election = self.elections[leader]
        target = election.metrics().messages_sent + rounds * len(election.status().peers)
        await wait_until(
            lambda: election.metrics().messages_sent >= target or not election.status().is_leader,
            what=f"{rounds} heartbeat rounds from {leader}",
        )

    async def wait_for_agreed_leader(self) -> str:
        await wait_until(lambda: self.agreed_leader() is not None, what="an agreed leader")
        leader = self.agreed_leader()
        assert leader is not None
        return leader

"""Exclusive leadership scopes: entered only under a lease, and over before the next one.

Real time on the in-memory network: each test polls with generous deadlines, and what it
asserts is an order of events on one clock (``election_clock``), never a duration.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from almost_raft import Election, Leadership, LeadershipLost, Lease, election_clock
from almost_raft.runtime._lease_watch import LeaseWatch
from helpers.cluster import DEADLINE, Cluster, run_async, wait_until


class Journal:
    """When each node's exclusive work started and stopped, on the election clock."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, int, float, float]] = []
        self.running: dict[str, tuple[int, float]] = {}

    async def work(self, election: Election, leadership: Leadership, cleanup: float) -> None:
        assert leadership.exclusive
        self.running[election.node_id] = (leadership.term, election_clock())
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            # Stopping takes a while; the next leader must wait for it.
            await asyncio.shield(asyncio.sleep(cleanup))
            term, started = self.running.pop(election.node_id)
            self.spans.append((election.node_id, term, started, election_clock()))

    def overlaps(self) -> list[str]:
        spans = sorted(self.spans, key=lambda span: span[2])
        return [
            f"{a[0]} (term {a[1]}) ran until {a[3]:.4f}, {b[0]} (term {b[1]}) from {b[2]:.4f}"
            for a, b in itertools.pairwise(spans)
            if b[2] < a[3]
        ]


async def run_exclusive(journal: Journal, election: Election, cleanup: float) -> None:
    async def work(leadership: Leadership) -> None:
        await journal.work(election, leadership, cleanup)

    await election.run_while_leader(work, exclusive=True)


def test_a_leadership_without_a_lease_is_not_exclusive() -> None:
    leadership = Leadership("a", 3)
    assert not leadership.exclusive
    assert leadership.lease_until is None
    assert leadership.lease_remaining() == 0.0


def test_the_election_clock_never_goes_back() -> None:
    readings = [election_clock() for _ in range(1000)]
    assert readings == sorted(readings)


@run_async
async def test_an_exclusive_scope_is_entered_with_a_lease_that_is_renewed() -> None:
    cluster = Cluster(3, seed=5)
    await cluster.start()
    try:
        leader = await cluster.wait_for_agreed_leader()
        election = cluster.elections[leader]
        async with election.leadership(exclusive=True) as leadership:
            assert leadership.exclusive
            first = leadership.lease_until
            assert first is not None
            assert first > election_clock()
            assert 0 < leadership.lease_remaining() <= election.config.lease_duration
            await wait_until(lambda: (leadership.lease_until or 0) > first, what="a renewed lease")
    finally:
        await cluster.close()


@run_async
async def test_a_hand_over_waits_for_exclusive_work_to_stop() -> None:
    cluster = Cluster(3, seed=8)
    journal = Journal()
    await cluster.start()
    runners = [
        asyncio.create_task(run_exclusive(journal, election, cleanup=0.03))
        for election in cluster.elections.values()
    ]
    try:
        first = await cluster.wait_for_agreed_leader()
        await wait_until(lambda: first in journal.running, what="work on the first leader")
        cluster.elections[first].step_down()
        await wait_until(
            lambda: any(node != first for node in journal.running), what="work on a successor"
        )
        assert [span[0] for span in journal.spans] == [first]
        assert journal.overlaps() == []
    finally:
        await cluster.close()
        await asyncio.wait(runners, timeout=DEADLINE)
    assert journal.overlaps() == []


@run_async
async def test_a_leader_cut_off_stops_its_work_before_the_others_start_theirs() -> None:
    cluster = Cluster(3, seed=11)
    journal = Journal()
    await cluster.start()
    runners = [
        asyncio.create_task(run_exclusive(journal, election, cleanup=0.0))
        for election in cluster.elections.values()
    ]
    try:
        first = await cluster.wait_for_agreed_leader()
        await wait_until(lambda: first in journal.running, what="work on the first leader")
        cluster.network.faults.isolate(first)
        await wait_until(
            lambda: any(node != first for node in journal.running), what="work on a successor"
        )
        assert [span[0] for span in journal.spans] == [first]
        assert journal.overlaps() == []
    finally:
        cluster.network.faults.heal()
        await cluster.close()
        await asyncio.wait(runners, timeout=DEADLINE)


@run_async
async def test_an_exclusive_scope_raises_leadership_lost_when_the_lease_runs_out() -> None:
    cluster = Cluster(3, seed=3)
    await cluster.start()
    try:
        leader = await cluster.wait_for_agreed_leader()
        election = cluster.elections[leader]
        seen: list[Leadership] = []

        async def hold() -> None:
            async with election.leadership(exclusive=True) as leadership:
                seen.append(leadership)
                cluster.network.faults.isolate(leader)
                # Cancelled when the lease runs out, which ends this wait at once.
                try:
                    await asyncio.wait_for(asyncio.Event().wait(), DEADLINE)
                except TimeoutError:
                    raise AssertionError(f"the lease did not run out within {DEADLINE}s") from None

        with pytest.raises(LeadershipLost):
            await hold()
        (leadership,) = seen
        # Lost to the lease running out: no news of another leader can reach it.
        assert election.status().is_leader or election.status().leader_id is None
        assert not leadership.exclusive
        assert leadership.lease_remaining() == 0.0
    finally:
        cluster.network.faults.heal()
        await cluster.close()


@run_async
async def test_a_lease_waiter_that_gives_up_does_not_cancel_the_others() -> None:
    watch = LeaseWatch(election_clock)
    first, second = watch.changed(), watch.changed()
    first.cancel()
    watch.update(Lease(1, 0.0, 1.0))
    assert second.done()
    assert not second.cancelled()
    assert watch.lease == Lease(1, 0.0, 1.0)

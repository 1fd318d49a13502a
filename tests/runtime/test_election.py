"""The Election API: validation, waiting, leadership news, leadership scopes, membership."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest

from almost_raft import (
    ConfigError,
    Election,
    ElectionClosed,
    ElectionConfig,
    InMemoryNetwork,
    LeaderChange,
    Leadership,
    LeadershipLost,
    NodeState,
)
from helpers.cluster import FAST, ROUNDS_PER_TIMEOUT, Cluster, run_async, wait_until

# ---------------------------------------------------------------------- validation

_NET = InMemoryNetwork()

CONFIG_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("node_id", {"node_id": ""}),
    ("node_id", {"node_id": 7}),
    ("node_id", {"node_id": "x" * 257}),
    ("peers", {"peers": "bc"}),
    ("peers", {"peers": ["b", "b"]}),
    ("peers", {"peers": ["b", ""]}),
    ("peers", {"peers": 5}),
    ("peers", {"peers": ["b", "c"], "config": ElectionConfig(max_nodes=2)}),
    ("transport", {"transport": object()}),
    ("config", {"config": {"election_timeout": 1}}),
    ("store", {"store": {}}),
    ("rng", {"rng": 42}),
]


@pytest.mark.parametrize(("field", "override"), CONFIG_ERRORS)
def test_invalid_arguments_raise_config_error_naming_the_field(
    field: str, override: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {
        "node_id": "a",
        "peers": ["b", "c"],
        "transport": _NET.transport("a"),
    }
    arguments.update(override)
    with pytest.raises(ConfigError) as info:
        Election(**arguments)
    assert info.value.field == field
    assert field in str(info.value)


@run_async
async def test_add_peer_rejects_bad_ids() -> None:
    election = Election("a", ["b"], InMemoryNetwork().transport("a"))
    with pytest.raises(ConfigError, match="peer_id"):
        election.add_peer("a")
    with pytest.raises(ConfigError, match="peer_id"):
        election.remove_peer("")
    await election.close()
    with pytest.raises(ElectionClosed):
        election.add_peer("c")


# ---------------------------------------------------------------------- status and waiting


@run_async
async def test_status_before_start_and_after_close() -> None:
    election = Election("a", ["b", "c"], InMemoryNetwork().transport("a"), config=FAST)
    status = election.status()
    assert (status.term, status.role, status.leader_id) == (0, NodeState.FOLLOWER, None)
    assert status.peers == frozenset({"b", "c"})
    election.add_peer("d")  # before start, changes the initial members
    assert election.status().peers == frozenset({"b", "c", "d"})
    await election.start()
    assert election.status().peers == frozenset({"b", "c", "d"})
    with pytest.raises(RuntimeError, match="already started"):
        await election.start()
    await election.close()
    assert election.status().role is NodeState.TERMINATING
    with pytest.raises(ElectionClosed):
        await election.start()


@run_async
async def test_wait_for_leader_times_out_without_a_majority() -> None:
    network = InMemoryNetwork()
    async with Election("a", ["b", "c"], network.transport("a"), config=FAST) as election:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await election.wait_for_leader(timeout=0.3)
        assert loop.time() - started >= 0.3
        assert election.status().leader_id is None
        assert election.metrics().pre_votes_started >= 1


@run_async
async def test_wait_for_leader_raises_election_closed_when_closed_meanwhile() -> None:
    election = Election("a", ["b", "c"], InMemoryNetwork().transport("a"), config=FAST)
    await election.start()
    waiter = asyncio.create_task(election.wait_for_leader())
    leadership = election._runtime.leadership
    await wait_until(lambda: bool(leadership._waiters), what="the waiter to wait for news")
    await election.close()
    with pytest.raises(ElectionClosed):
        await waiter


@run_async
async def test_all_nodes_see_the_same_leader_through_wait_for_leader() -> None:
    cluster = Cluster(3, seed=21)
    await cluster.start()
    try:
        seen = await asyncio.gather(
            *(e.wait_for_leader(timeout=10) for e in cluster.elections.values())
        )
        leader = await cluster.wait_for_agreed_leader()
        term = cluster.elections[leader].status().term
        # Each waiter returned a real leader; all are the agreed one unless the first
        # election was split and retried, in which case terms differ.
        assert all(change.leader_id is not None for change in seen)
        assert {c.leader_id for c in seen if c.term == term} <= {leader}
        metrics = cluster.elections[leader].metrics()
        assert metrics.elections_won >= 1
        assert metrics.role is NodeState.LEADER
        assert metrics.messages_sent > 0
    finally:
        await cluster.close()


# ---------------------------------------------------------------------- leadership news


@run_async
async def test_a_slow_subscriber_blocks_nothing_and_ends_with_the_current_value() -> None:
    cluster = Cluster(3, seed=8)
    await cluster.start()
    watcher = cluster.elections["n1"]
    changes = watcher.leadership_changes()
    first = await changes.next()
    assert first.leader_id is None or first.leader_id in cluster.ids
    try:
        # Never read while three leaders come and go.
        for _ in range(3):
            leader = await cluster.wait_for_agreed_leader()
            term = cluster.elections[leader].status().term
            cluster.network.faults.isolate(leader)

            def moved_on(term: int = term) -> bool:
                return any(
                    e.status().is_leader and e.status().term > term
                    for e in cluster.elections.values()
                )

            await wait_until(moved_on, what="a leader in a later term")
            cluster.network.faults.heal()
        await cluster.wait_for_agreed_leader()
        status = watcher.status()
        latest = await changes.next()
        assert latest == LeaderChange(status.leader_id, status.term)
        assert changes.skipped >= 2
    finally:
        await cluster.close()
    # After close: the final "no leader" value, then the end.
    rest = [change async for change in changes]
    assert rest == [LeaderChange(None, watcher.status().term)]


# ---------------------------------------------------------------------- leadership scopes


@run_async
async def test_leadership_scope_is_cancelled_and_raises_when_leadership_is_lost() -> None:
    cluster = Cluster(3, seed=13)
    await cluster.start()
    entered: asyncio.Queue[Leadership] = asyncio.Queue()
    body_cancelled: list[int] = []

    async def lead(election: Election) -> int:
        try:
            async with election.leadership() as leadership:
                await entered.put(leadership)
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    body_cancelled.append(leadership.term)
                    raise
        except LeadershipLost as lost:
            return lost.term
        raise AssertionError("the scope exited without LeadershipLost")

    tasks = {node: asyncio.create_task(lead(e)) for node, e in cluster.elections.items()}
    try:
        first = await asyncio.wait_for(entered.get(), 10)
        assert cluster.elections[first.node_id].status().is_leader
        cluster.network.faults.isolate(first.node_id)
        lost_term = await asyncio.wait_for(tasks.pop(first.node_id), 10)
        assert lost_term == first.term
        assert body_cancelled[0] == first.term
        # CheckQuorum made the isolated leader step down; the task itself was not
        # cancelled from outside, so its cancellation count is back to zero.
        assert not cluster.elections[first.node_id].status().is_leader
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await cluster.close()


@run_async
async def test_leadership_scope_body_that_finishes_exits_normally() -> None:
    network = InMemoryNetwork()
    async with Election("solo", [], network.transport("solo"), config=FAST) as election:
        async with election.leadership() as leadership:
            assert leadership == Leadership("solo", election.status().term)
        assert election.status().is_leader
        scope = election.leadership()
        async with scope:
            pass
        with pytest.raises(RuntimeError, match="once"):
            async with scope:
                pass


@run_async
async def test_outside_cancellation_inside_a_scope_stays_a_cancellation() -> None:
    network = InMemoryNetwork()
    async with Election("solo", [], network.transport("solo"), config=FAST) as election:
        inside = asyncio.Event()

        async def body() -> None:
            async with election.leadership():
                inside.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(body())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert election.status().is_leader


@run_async
async def test_closing_the_election_ends_a_leadership_scope() -> None:
    network = InMemoryNetwork()
    election = Election("solo", [], network.transport("solo"), config=FAST)
    await election.start()

    async def lead_then_close() -> None:
        async with election.leadership():
            await election.close()
            await asyncio.Event().wait()

    async def lead() -> None:
        async with election.leadership():
            raise AssertionError("a closed election has no leader")

    with pytest.raises(LeadershipLost):
        await lead_then_close()
    # Closing, not yet closed (the scope's end cancelled the first close() call's wait):
    # a new scope is refused at once all the same.
    with pytest.raises(ElectionClosed):
        await lead()
    await election.close()


@run_async
async def test_run_while_leader_runs_work_once_per_term_and_cancels_it_on_loss() -> None:
    cluster = Cluster(3, seed=17)
    await cluster.start()
    started: list[Leadership] = []
    cancelled: list[Leadership] = []

    async def work(leadership: Leadership) -> None:
        started.append(leadership)
        if len(started) == 1:
            return  # finishes while still leader: must not be restarted this term
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(leadership)
            raise

    runners = [asyncio.create_task(e.run_while_leader(work)) for e in cluster.elections.values()]
    try:
        leader = await cluster.wait_for_agreed_leader()
        await wait_until(lambda: len(started) >= 1, what="work to start")
        await cluster.wait_for_heartbeats(leader, rounds=2 * ROUNDS_PER_TIMEOUT)
        assert started == [Leadership(leader, cluster.elections[leader].status().term)]
        # Two failovers: the second leader's work runs until its leadership is lost.
        for _ in range(2):
            term = started[-1].term
            cluster.network.faults.isolate(started[-1].node_id)

            def later_work(term: int = term) -> bool:
                return started[-1].term > term

            await wait_until(later_work, what="work in a later term")
            cluster.network.faults.heal()
        await wait_until(lambda: len(cancelled) >= 1, what="work to be cancelled")
        assert all(a.term < b.term for a, b in itertools.pairwise(started))
        assert cancelled[0] == started[1]
    finally:
        await cluster.close()
    # Closing every election ends every runner without an error.
    assert await asyncio.gather(*runners) == [None, None, None]


@run_async
async def test_add_peer_past_max_nodes_is_refused_before_and_after_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = ElectionConfig(
        election_timeout=0.08, heartbeat_interval=0.01, message_timeout=0.05, max_nodes=3
    )

    def refused(peer: str) -> bool:
        return any(f"refused to add peer {peer}:" in r.getMessage() for r in caplog.records)

    election = Election("a", ["b"], InMemoryNetwork().transport("a"), config=config)
    with caplog.at_level(logging.WARNING, logger="almost_raft"):
        election.add_peer("c")
        election.add_peer("d")  # a fourth node: refused with a log line
        assert refused("d")
        assert election.status().peers == frozenset({"b", "c"})
        async with election:
            election.remove_peer("c")
            election.add_peer("e")
            election.add_peer("f")  # refused again
            await wait_until(
                lambda: refused("f") or "f" in election.status().peers, what="the refusal of f"
            )
            assert election.status().peers == frozenset({"b", "e"})


@run_async
async def test_status_tells_how_long_ago_each_peer_was_heard() -> None:
    cluster = Cluster(3, seed=11)
    await cluster.start()
    try:
        leader = await cluster.wait_for_agreed_leader()
        follower = next(node for node in cluster.ids if node != leader)
        asked = time.monotonic()
        heard = cluster.elections[follower].status().last_heard
        assert leader in heard
        assert 0 <= heard[leader] < FAST.election_timeout
        await cluster.stop(leader)

        def since_leader() -> float:
            return cluster.elections[follower].status().last_heard[leader]

        await wait_until(
            lambda: since_leader() >= FAST.election_timeout, what="the leader's silence to show"
        )
        # It counts the time that passed, no more.
        assert since_leader() <= heard[leader] + (time.monotonic() - asked)
    finally:
        await cluster.close()


def test_the_same_member_list_can_be_given_to_every_node() -> None:
    network = InMemoryNetwork()
    members = ["a", "b", "c"]
    election = Election("a", members, network.transport("a"), config=FAST)
    assert election.status().peers == frozenset({"b", "c"})

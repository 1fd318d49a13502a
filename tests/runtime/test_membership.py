"""Changing members through Election: awaitables that return once committed."""

from __future__ import annotations

import asyncio
import random

import pytest

from almost_raft import (
    ConfigError,
    Election,
    ElectionClosed,
    Inbox,
    InMemoryNetwork,
    InMemoryTransport,
    MembershipChangeError,
    MemoryStore,
    NodeState,
    PeerMessage,
    RemovalNotice,
)
from helpers.cluster import FAST, Cluster, run_async, wait_until

# Generous: a loaded machine is slow, and a passing test returns as soon as it commits.
COMMIT_DEADLINE = 10.0


def joining(cluster: Cluster, node: str) -> Election:
    """A new machine's Election, started with the cluster's members as its peers."""
    cluster.stores[node] = MemoryStore()
    return Election(
        node,
        list(cluster.ids),
        cluster.network.transport(node),
        config=FAST,
        store=cluster.stores[node],
        rng=random.Random(node),
    )


@run_async
async def test_a_member_added_before_it_is_up_joins_as_voter_once_it_has_caught_up() -> None:
    cluster = Cluster(3)
    await cluster.start()
    newcomer = joining(cluster, "n4")
    try:
        leader = cluster.elections[await cluster.wait_for_agreed_leader()]
        adding = asyncio.ensure_future(leader.add_member("n4", "10.0.0.4:7000"))
        # n4 is not up: it waits as a non-voter, and the three voters keep their leader.

        def has_n4() -> bool:
            config = leader.status().configuration
            return config is not None and config.member("n4") is not None

        await wait_until(has_n4, what="n4 as a non-voter")
        member = leader.status().configuration
        assert member is not None
        n4 = member.member("n4")
        assert n4 is not None
        assert (n4.voter, n4.address) == (False, "10.0.0.4:7000")
        assert not adding.done()
        with pytest.raises(MembershipChangeError, match="pending"):
            await leader.remove_member("n3")
        await newcomer.start()
        committed = await asyncio.wait_for(adding, COMMIT_DEADLINE)
        assert committed.voters == {"n1", "n2", "n3", "n4"}
        await wait_until(
            lambda: newcomer.status().committed_version == committed.version,
            what="n4 to learn the commit",
        )
        assert newcomer.status().leader_id == leader.node_id
        assert leader.status().peers == {"n1", "n2", "n3", "n4"} - {leader.node_id}
    finally:
        await newcomer.close()
        await cluster.close()


@run_async
async def test_a_follower_refuses_naming_the_leader_and_bad_changes_are_refused() -> None:
    cluster = Cluster(3)
    await cluster.start()
    try:
        leader_id = await cluster.wait_for_agreed_leader()
        follower = next(e for n, e in cluster.elections.items() if n != leader_id)
        with pytest.raises(MembershipChangeError) as info:
            await follower.add_member("n9")
        assert info.value.leader_id == leader_id
        assert leader_id in str(info.value)
        leader = cluster.elections[leader_id]
        before = leader.status().configuration
        with pytest.raises(ConfigError) as bad:
            await leader.remove_member("n9")
        assert bad.value.field == "node_id"
        with pytest.raises(ConfigError) as bad:
            await leader.add_member("")
        assert bad.value.field == "node_id"
        with pytest.raises(ConfigError) as bad:
            await leader.add_member("n5", address="")
        assert bad.value.field == "address"
        # Adding an existing member is a no-op that returns the committed configuration.
        same = await asyncio.wait_for(leader.add_member(follower.node_id), COMMIT_DEADLINE)
        assert same.ids == {"n1", "n2", "n3"}
        assert leader.status().configuration == before
    finally:
        await cluster.close()


@run_async
async def test_removing_a_follower_commits_and_the_removed_node_leaves() -> None:
    cluster = Cluster(3)
    await cluster.start()
    try:
        leader_id = await cluster.wait_for_agreed_leader()
        leader = cluster.elections[leader_id]
        victim_id = next(n for n in cluster.ids if n != leader_id)
        victim = cluster.elections[victim_id]
        committed = await asyncio.wait_for(leader.remove_member(victim_id), COMMIT_DEADLINE)
        assert victim_id not in committed.ids
        await wait_until(
            lambda: victim.status().role is NodeState.TERMINATING, what="the removed node to leave"
        )
        with pytest.raises(ElectionClosed):
            await victim.wait_for_leader(timeout=1)
        assert leader.status().is_leader
    finally:
        await cluster.close()


@run_async
async def test_removing_the_leader_commits_then_hands_over() -> None:
    cluster = Cluster(3)
    await cluster.start()
    try:
        leader_id = await cluster.wait_for_agreed_leader()
        leader = cluster.elections[leader_id]
        term = leader.status().term
        committed = await asyncio.wait_for(leader.remove_member(leader_id), COMMIT_DEADLINE)
        assert committed.voters == set(cluster.ids) - {leader_id}
        others = [e for n, e in cluster.elections.items() if n != leader_id]

        def successor() -> bool:
            views = {(e.status().leader_id, e.status().term) for e in others}
            return len(views) == 1 and next(iter(views))[0] not in (None, leader_id)

        await wait_until(successor, what="a successor among the remaining members")
        assert others[0].status().term > term
        await wait_until(
            lambda: leader.status().role is NodeState.TERMINATING, what="the old leader to leave"
        )
    finally:
        await cluster.close()


@run_async
async def test_a_change_asked_before_start_is_refused() -> None:
    cluster = Cluster(1)
    election = cluster.build("n1")
    with pytest.raises(ElectionClosed, match="not started"):
        await election.add_member("n2")
    await election.close()


class RecordingTransport(InMemoryTransport):
    """An in-memory transport that keeps every message it hands to its node's inbox."""

    def __init__(self, network: InMemoryNetwork, node_id: str) -> None:
        super().__init__(network, node_id)
        self.received: list[PeerMessage] = []

    async def start(self, node_id: str, inbox: Inbox) -> None:
        received = self.received

        class Recording(Inbox):
            def deliver(self, message: PeerMessage) -> None:
                received.append(message)
                inbox.deliver(message)

            def peer_unreachable(self, peer_id: str) -> None:
                inbox.peer_unreachable(peer_id)

            def peer_disconnected(self, peer_id: str) -> None:
                inbox.peer_disconnected(peer_id)

        await super().start(node_id, Recording())


async def no_longer_told(network: InMemoryNetwork) -> None:
    """Wait until nothing is sent to a node that is down (every drop is one) for twenty
    heartbeats: the leader tells a removed member only for an election timeout."""
    loop = asyncio.get_running_loop()
    last = (network.dropped, loop.time())

    def quiet() -> bool:
        nonlocal last
        if network.dropped != last[0]:
            last = (network.dropped, loop.time())
        return loop.time() - last[1] > 20 * FAST.heartbeat_interval

    await wait_until(quiet, what="the leader to stop telling the removed member")


@run_async
async def test_a_member_removed_while_down_learns_it_when_it_comes_back_and_leaves() -> None:
    cluster = Cluster(3)
    await cluster.start()
    try:
        leader_id = await cluster.wait_for_agreed_leader()
        leader = cluster.elections[leader_id]
        victim_id = next(n for n in cluster.ids if n != leader_id)
        await cluster.stop(victim_id)
        committed = await asyncio.wait_for(leader.remove_member(victim_id), COMMIT_DEADLINE)
        assert victim_id not in committed.ids
        await no_longer_told(cluster.network)
        # It comes back from its store, which still names it a member.
        transport = RecordingTransport(cluster.network, victim_id)
        victim = cluster.build(victim_id, transport)
        state = cluster.stores[victim_id].load()
        assert state is not None
        assert state.configuration is not None
        assert victim_id in state.configuration.ids
        await victim.start()
        try:
            await wait_until(
                lambda: victim.status().role is NodeState.TERMINATING,
                what="the removed member to leave",
            )
            assert any(isinstance(m, RemovalNotice) for m in transport.received)
            saved = cluster.stores[victim_id].load()
            assert saved is not None
            assert saved.configuration == committed
            assert leader.status().is_leader
        finally:
            await victim.close()
    finally:
        await cluster.close()

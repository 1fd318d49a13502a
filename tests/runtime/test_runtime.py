"""The asyncio runtime on the in-memory network: elections, failover, durability, sends."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from pathlib import Path

import pytest

from almost_raft import (
    Election,
    ElectionClosed,
    FileStore,
    HardState,
    HeartBeat,
    InMemoryNetwork,
    InMemoryTransport,
    MemoryStore,
    NetworkFaults,
    NodeState,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
    StateFileError,
    Store,
    Transport,
)
from almost_raft.transport._interface import Inbox
from helpers.cluster import FAST, ROUNDS_PER_TIMEOUT, Cluster, run_async, wait_until


@pytest.mark.parametrize("size", [3, 5])
@run_async
async def test_cluster_elects_exactly_one_leader_and_all_agree(size: int) -> None:
    cluster = Cluster(size, seed=size)
    await cluster.start()
    try:
        leader = await cluster.wait_for_agreed_leader()
        term = cluster.elections[leader].status().term
        assert all(e.status().term == term for e in cluster.elections.values())
        # Stays put: heartbeats keep the followers from campaigning.
        await cluster.wait_for_heartbeats(leader, rounds=3 * ROUNDS_PER_TIMEOUT)
        assert cluster.agreed_leader() == leader
        assert cluster.elections[leader].status().term == term
    finally:
        await cluster.close()


@run_async
async def test_killing_the_leader_elects_a_new_one_in_a_higher_term() -> None:
    cluster = Cluster(3, seed=11)
    await cluster.start()
    try:
        old = await cluster.wait_for_agreed_leader()
        old_term = cluster.elections[old].status().term
        await cluster.stop(old)
        await wait_until(
            lambda: (
                (leader := cluster.agreed_leader()) is not None
                and cluster.elections[leader].status().term > old_term
            ),
            what="a new leader in a higher term",
        )
        assert cluster.agreed_leader() != old
    finally:
        await cluster.close()


@run_async
async def test_restarted_node_keeps_its_term_and_does_not_depose_the_leader() -> None:
    cluster = Cluster(3, seed=5)
    await cluster.start()
    try:
        leader = await cluster.wait_for_agreed_leader()
        term = cluster.elections[leader].status().term
        follower = next(node for node in cluster.ids if node != leader)
        await cluster.stop(follower)
        store = cluster.stores[follower]
        assert isinstance(store, MemoryStore)
        assert store.state is not None
        assert store.state.term == term

        restarted = cluster.build(follower)
        await restarted.start()
        cluster.elections[follower] = restarted
        assert restarted.status().term == term  # read back from the store at start
        await wait_until(
            lambda: restarted.status().leader_id == leader, what="the restarted node to rejoin"
        )
        await cluster.wait_for_heartbeats(leader, rounds=3 * ROUNDS_PER_TIMEOUT)
        assert cluster.agreed_leader() == leader
        assert cluster.elections[leader].status().term == term
    finally:
        await cluster.close()


class _SlowCheckingStore(Store):
    """Saves in a worker thread, slowly, so a send that does not wait for it shows."""

    def __init__(self) -> None:
        self.state: HardState | None = None
        self.lock = threading.Lock()

    def load(self) -> HardState | None:
        return None

    def save(self, state: HardState) -> None:
        threading.Event().wait(0.01)
        with self.lock:
            self.state = state


class _VoteAuditTransport(Transport):
    """Checks, at the moment each message leaves, what the store already holds.

    A granted vote, and a heartbeat (a claim of leadership), must be durable when they
    leave; a candidate's vote request may leave while its save is still running.
    """

    def __init__(self, inner: Transport, store: _SlowCheckingStore) -> None:
        self.inner = inner
        self.store = store
        self.votes_checked = 0
        self.requests_before_save = 0
        self.violations: list[str] = []

    async def start(self, node_id: str, inbox: Inbox) -> None:
        self.node_id = node_id
        await self.inner.start(node_id, inbox)

    async def send(self, to: str, message: PeerMessage) -> None:
        with self.store.lock:
            state = self.store.state
        # The configuration saved with them is not what this audit is about.
        saved = None if state is None else HardState(state.term, state.voted_for)
        if isinstance(message, RequestVote) and not message.pre_vote:
            if saved != HardState(message.term, self.node_id):
                self.requests_before_save += 1
        elif isinstance(message, RequestVoteResponse) and message.granted and not message.pre_vote:
            self.votes_checked += 1
            if saved != HardState(message.term, to):
                self.violations.append(f"{message} sent while the store held {saved}")
        elif isinstance(message, HeartBeat):
            self.votes_checked += 1
            if saved is None or saved.term != message.term or saved.voted_for != self.node_id:
                self.violations.append(f"{message} sent while the store held {saved}")
        await self.inner.send(to, message)

    async def close(self) -> None:
        await self.inner.close()


@run_async
async def test_votes_and_leadership_are_durable_before_sent_and_requests_overlap_the_save() -> None:
    network = InMemoryNetwork()
    ids = ["a", "b", "c"]
    audits: list[_VoteAuditTransport] = []
    elections = []
    for node in ids:
        store = _SlowCheckingStore()
        audit = _VoteAuditTransport(network.transport(node), store)
        audits.append(audit)
        elections.append(
            Election(
                node,
                [p for p in ids if p != node],
                audit,
                config=FAST,
                store=store,
                rng=random.Random(node),
            )
        )
    try:
        for election in elections:
            await election.start()
        await wait_until(lambda: any(e.status().is_leader for e in elections), what="a leader")
        # Force more elections, each with fresh votes to persist.
        for _ in range(2):
            (leader,) = [e for e in elections if e.status().is_leader]
            term = leader.status().term
            network.faults.isolate(leader.node_id)

            def newer_leader(term: int = term) -> bool:
                return any(e.status().is_leader and e.status().term > term for e in elections)

            await wait_until(newer_leader, what="a leader in a later term")
            network.faults.heal()
            await wait_until(
                lambda: sum(e.status().is_leader for e in elections) == 1, what="one leader"
            )
        assert sum(a.votes_checked for a in audits) >= 6
        assert [v for a in audits for v in a.violations] == []
        # The saves take 10 ms: vote requests that waited for them would never be seen early.
        assert sum(a.requests_before_save for a in audits) >= 3
        assert all(e.metrics().state_saves > 0 for e in elections)
    finally:
        for election in elections:
            await election.close()


@run_async
async def test_a_crashed_leader_is_replaced_with_pre_votes_asked_early() -> None:
    # 5 ms each way; the leader's crash is told to the others as TCP would tell it.
    cluster = Cluster(5, seed=11, faults=NetworkFaults(random.Random(11), delay=(0.004, 0.006)))
    await cluster.start()
    try:
        leader = await cluster.wait_for_agreed_leader()
        term = cluster.elections[leader].status().term
        # The answers to heartbeats measure the round trips that space the turns; twenty
        # leave little of the first sample's doubt in the smoothed estimate.
        await cluster.wait_for_heartbeats(leader, rounds=20)
        cluster.network.crash(leader)
        survivors = {n: e for n, e in cluster.elections.items() if n != leader}

        def successor() -> str | None:
            leaders = [n for n, e in survivors.items() if e.status().is_leader]
            views = {e.status().leader_id for e in survivors.values()}
            return leaders[0] if len(leaders) == 1 and views == {leaders[0]} else None

        await wait_until(lambda: successor() is not None, what="a successor all follow")
        new = successor()
        assert new is not None
        assert survivors[new].status().term > term
        # The first in line asked as soon as its connection ended, before its evidence.
        assert sum(e.metrics().early_pre_votes for e in survivors.values()) == 1
        assert sum(e.metrics().leader_down_reports for e in survivors.values()) >= 2
    finally:
        await cluster.elections[leader].close(hand_over=False)
        del cluster.elections[leader]
        await cluster.close()


class _HangingTransport(Transport):
    """Sends to ``black_hole`` never complete; everything else goes through."""

    def __init__(self, inner: Transport, black_hole: str) -> None:
        self.inner = inner
        self.black_hole = black_hole
        self.sent_at: dict[str, list[float]] = {}

    async def start(self, node_id: str, inbox: Inbox) -> None:
        await self.inner.start(node_id, inbox)

    async def send(self, to: str, message: PeerMessage) -> None:
        self.sent_at.setdefault(to, []).append(asyncio.get_running_loop().time())
        if to == self.black_hole:
            await asyncio.Event().wait()
        await self.inner.send(to, message)

    async def close(self) -> None:
        await self.inner.close()


@run_async
async def test_a_send_that_hangs_forever_does_not_delay_heartbeats_to_others() -> None:
    network = InMemoryNetwork()
    transports = {node: _HangingTransport(network.transport(node), "c") for node in "ab"}
    elections = [
        Election(
            node,
            [p for p in "abc" if p != node],
            transports[node],
            config=FAST,
            rng=random.Random(node),
        )
        for node in "ab"
    ]
    try:
        for election in elections:
            await election.start()
        await wait_until(lambda: any(e.status().is_leader for e in elections), what="a leader")
        (leader,) = [e for e in elections if e.status().is_leader]
        other = "b" if leader.node_id == "a" else "a"
        times = transports[leader.node_id].sent_at
        start = len(times[other])
        # Four election timeouts' worth: the first sends to "c" have long timed out.
        await wait_until(
            lambda: (
                len(times[other]) - start >= 4 * ROUNDS_PER_TIMEOUT or not leader.status().is_leader
            ),
            what=f"heartbeats to {other}",
        )
        beats = times[other][start:]
        gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
        assert len(beats) >= 4 * ROUNDS_PER_TIMEOUT
        # Every send to "c" hangs, yet heartbeats to the other node keep their pace.
        assert max(gaps) < FAST.election_timeout / 2
        assert leader.status().is_leader
        assert leader.metrics().sends_timed_out > 0
    finally:
        for election in elections:
            await election.close()


class _PathRecordingTransport(Transport):
    """Counts which send path the runtime takes; ``fast`` is what ``send_nowait`` does.

    True takes the message (through the in-memory network), False declines it, and an
    exception is raised.
    """

    def __init__(self, inner: InMemoryTransport, fast: bool | Exception) -> None:
        self.inner = inner
        self.fast = fast
        self.nowait_calls = 0
        self.send_calls = 0

    async def start(self, node_id: str, inbox: Inbox) -> None:
        await self.inner.start(node_id, inbox)

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        self.nowait_calls += 1
        if isinstance(self.fast, Exception):
            raise self.fast
        return self.fast and self.inner.send_nowait(to, message)

    async def send(self, to: str, message: PeerMessage) -> None:
        self.send_calls += 1
        await self.inner.send(to, message)

    async def close(self) -> None:
        await self.inner.close()


async def _elect_with(
    fast: bool | Exception,
) -> tuple[list[_PathRecordingTransport], list[Election]]:
    """Three nodes whose transports send as ``fast`` says, run until a leader or 1 s."""
    network = InMemoryNetwork()
    transports = [_PathRecordingTransport(network.transport(node), fast) for node in "abc"]
    elections = [
        Election(
            node,
            [p for p in "abc" if p != node],
            transport,
            config=FAST,
            rng=random.Random(node),
        )
        for node, transport in zip("abc", transports, strict=True)
    ]
    try:
        for election in elections:
            await election.start()
        if isinstance(fast, Exception):
            await wait_until(
                lambda: sum(e.metrics().sends_failed for e in elections) >= 10,
                what="failed sends",
            )
        else:
            await wait_until(lambda: any(e.status().is_leader for e in elections), what="a leader")
    finally:
        for election in elections:
            await election.close()
    return transports, elections


@run_async
async def test_a_transport_that_never_waits_is_sent_to_without_a_task() -> None:
    transports, elections = await _elect_with(True)
    assert all(t.nowait_calls > 0 for t in transports)
    # send() is what the runtime's per-message task calls: no task ever ran.
    assert all(t.send_calls == 0 for t in transports)
    sent = sum(e.metrics().messages_sent for e in elections)
    assert sum(t.nowait_calls for t in transports) == sent


@run_async
async def test_a_transport_that_declines_the_fast_path_is_sent_to_in_tasks() -> None:
    transports, elections = await _elect_with(False)
    # Every message was offered to send_nowait, declined, and sent by send() instead.
    for transport, election in zip(transports, elections, strict=True):
        assert transport.send_calls == transport.nowait_calls == election.metrics().messages_sent
    assert transports[0].send_calls > 0


@run_async
async def test_a_fast_send_that_raises_counts_as_a_failed_send() -> None:
    transports, elections = await _elect_with(ConnectionError("no route"))
    assert all(t.send_calls == 0 for t in transports)
    for transport, election in zip(transports, elections, strict=True):
        assert election.metrics().sends_failed == transport.nowait_calls
    assert not any(e.status().is_leader for e in elections)


@run_async
async def test_corrupt_state_file_stops_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"format": "almost-raft-state", "term": 3}')
    network = InMemoryNetwork()
    election = Election("a", ["b", "c"], network.transport("a"), store=FileStore(path))
    with pytest.raises(StateFileError):
        await election.start()
    assert network.live_nodes == frozenset()  # the transport never started
    assert election.status().role is NodeState.TERMINATING
    with pytest.raises(ElectionClosed):
        await election.wait_for_leader()
    # The lock was released: another store can open the file (and also refuses it).
    with pytest.raises(StateFileError, match=r"checksum|version"):
        FileStore(path).load()


@run_async
async def test_a_file_store_keeps_the_term_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    network = InMemoryNetwork()
    async with Election(
        "solo", [], network.transport("solo"), config=FAST, store=FileStore(path)
    ) as e:
        first = await e.wait_for_leader(timeout=5)
    assert first.leader_id == "solo"
    async with Election(
        "solo", [], network.transport("solo"), config=FAST, store=FileStore(path)
    ) as e:
        assert e.status().term == first.term
        second = await e.wait_for_leader(timeout=5)
    assert second.term > first.term


class _FailingStore(Store):
    def load(self) -> HardState | None:
        return None

    def save(self, state: HardState) -> None:
        raise OSError(28, "No space left on device")


@run_async
async def test_a_crashed_election_task_wakes_waiters_with_the_cause() -> None:
    network = InMemoryNetwork()
    election = Election("solo", [], network.transport("solo"), config=FAST, store=_FailingStore())
    await election.start()
    try:
        with pytest.raises(ElectionClosed) as info:
            await election.wait_for_leader(timeout=5)
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(ElectionClosed):
            election.add_peer("b")
    finally:
        await election.close()


@run_async
async def test_close_is_idempotent_and_leaves_no_tasks_behind() -> None:
    cluster = Cluster(3, seed=2)
    await cluster.start()
    await cluster.wait_for_agreed_leader()
    elections = list(cluster.elections.values())
    await asyncio.gather(*(e.close() for e in elections), *(e.close() for e in elections))
    for election in elections:
        await election.close()
        assert election.status().role is NodeState.TERMINATING
    assert cluster.network.live_nodes == frozenset()
    assert asyncio.all_tasks() == {asyncio.current_task()}


@run_async
async def test_close_finishes_even_if_the_caller_is_cancelled() -> None:
    cluster = Cluster(3, seed=3)
    await cluster.start()
    await cluster.wait_for_agreed_leader()
    election = cluster.elections["n1"]
    closer = asyncio.create_task(election.close())
    await asyncio.sleep(0)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await election.close()  # waits for the cleanup the cancelled call began
    assert "n1" not in cluster.network.live_nodes
    assert election.status().role is NodeState.TERMINATING
    del cluster.elections["n1"]
    await cluster.close()


@run_async
async def test_inputs_beyond_the_bound_are_dropped_and_counted() -> None:
    network = InMemoryNetwork()
    election = Election("a", ["b"], network.transport("a"), config=FAST)
    await election.start()
    try:
        runtime = election._runtime
        message = RequestVoteResponse(0, "b", granted=False)
        for _ in range(10_050):
            runtime.deliver(message)  # no await: the election's task cannot drain meanwhile
        assert election.metrics().inputs_dropped == 50
        await wait_until(lambda: runtime._inputs.empty(), what="the inputs to drain")
    finally:
        await election.close()


class _SlowLoadStore(Store):
    def __init__(self) -> None:
        self.loading = threading.Event()
        self.release = threading.Event()

    def load(self) -> HardState | None:
        self.loading.set()
        self.release.wait(5)
        return HardState(4, None)

    def save(self, state: HardState) -> None:
        pass


@run_async
async def test_close_during_start_leaves_nothing_running() -> None:
    network = InMemoryNetwork()
    store = _SlowLoadStore()
    election = Election("a", ["b"], network.transport("a"), config=FAST, store=store)
    starting = asyncio.create_task(election.start())
    await asyncio.to_thread(store.loading.wait, 5)
    closing = asyncio.create_task(election.close())
    # No event marks when a close that did not wait for the load would have ended; it
    # has nothing else to wait for, so it would end within a few loop turns, and 10 ms
    # hold many.
    await asyncio.sleep(0.01)
    assert not closing.done()  # close waits for the load in the worker thread
    store.release.set()
    with pytest.raises(ElectionClosed):
        await starting
    await closing
    assert network.live_nodes == frozenset()
    assert election.status().role is NodeState.TERMINATING

"""How the runtime feeds the core: at once while idle, through its queue around a save."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from almost_raft import (
    ElectionClosed,
    ElectionConfig,
    HardState,
    HeartBeat,
    HeartBeatResponse,
    LeaderChange,
    MemoryStore,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
    Store,
    Transport,
)
from almost_raft.runtime._driver import Runtime
from almost_raft.runtime._latest_value import Subscription
from almost_raft.runtime._lifecycle import Phase
from almost_raft.transport._interface import Inbox
from helpers.cluster import run_async, wait_until

# Nothing times out while a test runs: every input comes from the test.
QUIET = ElectionConfig(election_timeout=30.0, heartbeat_interval=1.0)


class _Recorder(Transport):
    """Takes every message on the spot and keeps it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, PeerMessage]] = []

    async def start(self, node_id: str, inbox: Inbox) -> None:
        pass

    async def send(self, to: str, message: PeerMessage) -> None:
        raise AssertionError("the runtime should have used send_nowait")

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        self.sent.append((to, message))
        return True

    async def close(self) -> None:
        pass


class _GatedStore(Store):
    """A save blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.saving = threading.Event()
        self.saved: list[HardState] = []

    def load(self) -> HardState | None:
        return None

    def save(self, state: HardState) -> None:
        self.saving.set()
        self.gate.wait(10.0)
        self.saved.append(state)


async def _started(store: Store) -> tuple[Runtime, _Recorder]:
    transport = _Recorder()
    runtime = Runtime("a", ["b", "c"], transport, QUIET, store, random.Random(1))
    await runtime.start()
    # Let the election's task reach its first wait for input.
    await wait_until(
        lambda: runtime._life.phase is Phase.IDLE, what="the election's task to wait for input"
    )
    return runtime, transport


@run_async
async def test_an_idle_node_answers_a_heartbeat_before_deliver_returns() -> None:
    runtime, transport = await _started(MemoryStore(HardState(3, None)))
    try:
        runtime.deliver(HeartBeat(3, "b"))
        # No await in between: the core took it, and the answer left, within deliver().
        assert runtime.status().leader_id == "b"
        assert transport.sent == [("b", HeartBeatResponse(3, "a"))]
    finally:
        await runtime.close()


@run_async
async def test_a_vote_waits_for_its_save_and_so_does_every_later_input() -> None:
    store = _GatedStore()
    runtime, transport = await _started(store)
    try:
        runtime.deliver(RequestVote(1, "b"))
        await wait_until(store.saving.is_set, what="the save to start")
        # The vote is not sent before it is durable, and a heartbeat arriving during the
        # save waits: the core sees nothing until the save ends.
        runtime.deliver(HeartBeat(1, "b"))
        await asyncio.sleep(0)
        assert transport.sent == []
        assert runtime.status().leader_id is None
        store.gate.set()
        await wait_until(lambda: len(transport.sent) == 2, what="the vote and the answer")
        assert transport.sent == [
            ("b", RequestVoteResponse(1, "a", granted=True)),
            ("b", HeartBeatResponse(1, "a")),
        ]
        assert store.saved == [HardState(1, "b")]
        assert runtime.status().leader_id == "b"
    finally:
        store.gate.set()
        await runtime.close()


@run_async
async def test_a_core_that_raises_on_arrival_fails_the_election_not_the_transport() -> None:
    runtime, _ = await _started(MemoryStore())
    core = runtime.core
    assert core is not None

    def broken(message: PeerMessage, now: float) -> None:
        raise RuntimeError("vote handler bug")

    core.receive = broken  # type: ignore[method-assign,assignment]
    try:
        runtime.deliver(HeartBeat(1, "b"))  # must not raise into the transport
        await wait_until(lambda: runtime.failure is not None, what="the election to fail")
        assert isinstance(runtime.failure, RuntimeError)
        assert str(runtime.failure) == "vote handler bug"
    finally:
        await runtime.close()


class _Boom(BaseException):
    """Not an Exception: what a plain ``except Exception`` in a send path lets through."""


class _ExplodingSend(_Recorder):
    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        raise _Boom("send path bug")


async def _until_closed(runtime: Runtime, changes: Subscription[LeaderChange]) -> None:
    while True:
        await changes.next()
        if runtime.leadership.closed:
            raise runtime.leadership.closed_error()


@run_async
async def test_a_send_that_fails_on_arrival_fails_the_election_not_the_transport() -> None:
    transport = _ExplodingSend()
    store = MemoryStore(HardState(1, None))  # term 1 already: the heartbeat needs no save
    runtime = Runtime("a", ["b", "c"], transport, QUIET, store, random.Random(1))
    await runtime.start()
    await wait_until(lambda: runtime._life.phase is Phase.IDLE, what="the task to wait for input")
    changes = runtime.leadership.subscribe()
    try:
        runtime.deliver(HeartBeat(1, "b"))  # must not raise into the transport
        await wait_until(lambda: runtime.failure is not None, what="the election to fail")
        assert isinstance(runtime.failure, _Boom)
        assert runtime._life.phase is Phase.STOPPED
        assert runtime.status().is_leader is False
        with pytest.raises(ElectionClosed) as info:
            await _until_closed(runtime, changes)
        assert isinstance(info.value.__cause__, _Boom)
    finally:
        await runtime.close()


@run_async
async def test_a_leader_change_reader_that_fails_on_arrival_fails_the_election() -> None:
    def reader(change: LeaderChange) -> None:
        raise _Boom("reader bug")

    transport = _Recorder()
    store = MemoryStore(HardState(1, None))
    runtime = Runtime(
        "a", ["b", "c"], transport, QUIET, store, random.Random(1), on_leader_change=reader
    )
    await runtime.start()
    await wait_until(lambda: runtime._life.phase is Phase.IDLE, what="the task to wait for input")
    try:
        runtime.deliver(HeartBeat(1, "b"))
        await wait_until(lambda: runtime.failure is not None, what="the election to fail")
        assert isinstance(runtime.failure, _Boom)
    finally:
        await runtime.close()


class _Echo(_Recorder):
    """Delivers a copy of the first message back to the sender's inbox from inside the send."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox: Inbox | None = None

    async def start(self, node_id: str, inbox: Inbox) -> None:
        self.inbox = inbox

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        first = not self.sent
        super().send_nowait(to, message)
        if first:
            assert self.inbox is not None
            self.inbox.deliver(HeartBeat(1, "b"))
        return True


@run_async
async def test_a_delivery_made_from_inside_a_send_waits_its_turn() -> None:
    transport = _Echo()
    store = MemoryStore(HardState(1, None))
    runtime = Runtime("a", ["b", "c"], transport, QUIET, store, random.Random(1))
    await runtime.start()
    await wait_until(lambda: runtime._life.phase is Phase.IDLE, what="the task to wait for input")
    try:
        runtime.deliver(HeartBeat(1, "b"))
        # The echo came in while the first answer was being sent: it waits for the task.
        assert transport.sent == [("b", HeartBeatResponse(1, "a"))]
        await wait_until(lambda: len(transport.sent) == 2, what="the echo's answer")
        assert runtime.failure is None
    finally:
        await runtime.close()


class _ThreadRecordingStore(MemoryStore):
    """Records the thread of every load and save."""

    def __init__(self, *, blocking: bool) -> None:
        super().__init__()
        self.blocking = blocking
        self.threads: list[threading.Thread] = []

    def load(self) -> HardState | None:
        self.threads.append(threading.current_thread())
        return super().load()

    def save(self, state: HardState) -> None:
        self.threads.append(threading.current_thread())
        super().save(state)


@pytest.mark.parametrize("blocking", [True, False])
def test_a_store_that_blocks_is_called_off_the_loop_and_one_that_does_not_on_it(
    blocking: bool,
) -> None:
    store = _ThreadRecordingStore(blocking=blocking)

    @run_async
    async def scenario() -> None:
        runtime, transport = await _started(store)
        try:
            runtime.deliver(RequestVote(1, "b"))
            await wait_until(lambda: len(transport.sent) == 1, what="the vote")
        finally:
            await runtime.close()

    scenario()
    assert len(store.threads) == 2  # the load, then the vote's save
    on_loop = [thread is threading.main_thread() for thread in store.threads]
    assert on_loop == [not blocking, not blocking]

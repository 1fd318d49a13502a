"""The runtime's one lifecycle state, and how each public call is judged by it."""

from __future__ import annotations

import asyncio

import pytest

from almost_raft import Election, ElectionClosed, InMemoryNetwork, NodeState
from almost_raft.runtime._lifecycle import Lifecycle, Phase
from helpers.cluster import FAST, run_async, wait_until


def phase(election: Election) -> Phase:
    return election._runtime._life.phase


async def _solo_leader() -> Election:
    network = InMemoryNetwork()
    election = Election("solo", [], network.transport("solo"), config=FAST)
    await election.start()
    await election.wait_for_leader(timeout=10)
    assert election.status().is_leader
    return election


@run_async
async def test_after_the_task_is_cancelled_the_election_is_over_for_every_call() -> None:
    # asyncio.run cancels the tasks left when its main coroutine returns; a leader whose
    # task went that way must not go on calling itself leader.
    election = await _solo_leader()
    driver = election._runtime.driver
    assert driver is not None
    driver.cancel()
    await asyncio.wait({driver})
    try:
        status = election.status()
        assert status.is_leader is False
        assert status.role is NodeState.TERMINATING
        assert phase(election) is Phase.STOPPED
        with pytest.raises(ElectionClosed):
            election.step_down()
        with pytest.raises(ElectionClosed):
            election.add_peer("b")
        with pytest.raises(ElectionClosed):
            await election.wait_for_leader(timeout=5)
        with pytest.raises(ElectionClosed):
            async with election.leadership():
                pass
    finally:
        await election.close()
    assert phase(election) is Phase.CLOSED


@run_async
async def test_a_task_cancelled_between_close_and_its_cleanup_still_closes() -> None:
    # As asyncio.run's teardown after a KeyboardInterrupt: close() is called, and the
    # election's task is cancelled before the cleanup task has taken its first step.
    election = await _solo_leader()
    driver = election._runtime.driver
    assert driver is not None
    closing = asyncio.ensure_future(election.close())
    await asyncio.sleep(0)
    driver.cancel()
    await asyncio.wait_for(closing, timeout=10)
    assert phase(election) is Phase.CLOSED
    assert election.status().is_leader is False


@run_async
async def test_phases_from_start_to_close() -> None:
    network = InMemoryNetwork()
    election = Election("solo", [], network.transport("solo"), config=FAST)
    assert phase(election) is Phase.NEW
    await election.start()
    await wait_until(lambda: phase(election) is Phase.IDLE, what="the task to wait for input")
    closing = asyncio.ensure_future(election.close())
    await asyncio.sleep(0)
    # Closed for every call from the moment close() is called.
    with pytest.raises(ElectionClosed):
        election.step_down()
    with pytest.raises(ElectionClosed):
        await election.wait_for_leader(timeout=5)
    with pytest.raises(ElectionClosed):
        async with election.leadership():
            pass
    await closing
    assert phase(election) is Phase.CLOSED
    with pytest.raises(ElectionClosed):
        await election.start()


def test_a_move_outside_the_table_is_refused() -> None:
    life = Lifecycle()
    with pytest.raises(AssertionError):
        life.move(Phase.RUNNING)
    life.move(Phase.STARTING)
    life.move(Phase.RUNNING)
    life.move(Phase.STOPPED)
    with pytest.raises(AssertionError):
        life.move(Phase.RUNNING)
    life.move(Phase.CLOSING)
    life.move(Phase.CLOSED)
    assert life.closed
    assert not life.takes_input

"""A store's blocking call in a thread of its own: its result, its error, and what
cancelling or closing the loop leaves behind."""

from __future__ import annotations

import asyncio
import threading

import pytest

from almost_raft.runtime._in_thread import in_thread


def test_the_call_runs_in_a_named_thread_and_returns_its_result() -> None:
    name = asyncio.run(in_thread(lambda: threading.current_thread().name, "n1: save"))
    assert name == "n1: save"


def test_the_loop_runs_while_the_call_blocks() -> None:
    release = threading.Event()
    ticks: list[int] = []

    async def main() -> str:
        call = asyncio.ensure_future(in_thread(lambda: "done" if release.wait(10) else "", "t"))
        for tick in range(3):
            await asyncio.sleep(0)
            ticks.append(tick)
        assert not call.done()
        release.set()
        return await call

    assert asyncio.run(main()) == "done"
    assert ticks == [0, 1, 2]


def test_an_error_of_the_call_is_raised_to_the_caller() -> None:
    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(in_thread(fail, "t"))


def test_a_cancelled_caller_leaves_the_call_to_finish(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    finished = threading.Event()

    def save() -> None:
        release.wait(10)
        finished.set()

    async def main() -> None:
        call = asyncio.ensure_future(in_thread(save, "cancelled"))
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()
        [thread] = [t for t in threading.enumerate() if t.name == "cancelled"]
        # The thread's report reaches the loop before the join's own does.
        await asyncio.to_thread(thread.join, 10)

    asyncio.run(main())
    assert finished.is_set()
    # Its result had nobody to go to, and was dropped without an error.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_the_interpreter_waits_for_a_call_under_way_and_a_closed_loop_is_no_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    release = threading.Event()
    done: list[bool] = []

    def save() -> None:
        release.wait(10)
        done.append(True)

    started: list[asyncio.Future[None]] = []

    async def main() -> None:
        started.append(asyncio.ensure_future(in_thread(save, "t")))
        await asyncio.sleep(0)

    asyncio.run(main())
    # The loop is closed; the thread is not a daemon, so it still runs, and its report
    # to the closed loop is dropped.
    [thread] = [t for t in threading.enumerate() if t.name == "t"]
    assert not thread.daemon
    release.set()
    thread.join(10)
    assert done == [True]
    assert "Exception" not in capfd.readouterr().err

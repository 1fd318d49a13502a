"""A store's blocking call in a thread of its own: its result, its error, and what
cancelling or closing the loop leaves behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from almost_raft.runtime._in_thread import in_thread


def _blocked_until(
    release: threading.Event, started: asyncio.Event, results: list[str] | None = None
) -> Callable[[], str]:
    """A call that tells the loop it has begun, blocks until ``release``, and notes its
    result in ``results`` as it returns."""
    loop = asyncio.get_running_loop()

    def call() -> str:
        loop.call_soon_threadsafe(started.set)
        result = "done" if release.wait(10) else "not released"
        if results is not None:
            results.append(result)
        return result

    return call


def test_the_call_runs_in_a_named_thread_and_returns_its_result() -> None:
    name = asyncio.run(in_thread(lambda: threading.current_thread().name, "n1: save"))
    assert name == "n1: save"


def test_the_loop_runs_while_the_call_blocks() -> None:
    release = threading.Event()

    async def main() -> str:
        started = asyncio.Event()
        call = asyncio.ensure_future(in_thread(_blocked_until(release, started), "t"))
        await asyncio.wait_for(started.wait(), 10)
        # The call is blocked in its thread; the loop still runs other callbacks.
        ran = asyncio.Event()
        asyncio.get_running_loop().call_soon(ran.set)
        await asyncio.wait_for(ran.wait(), 10)
        assert not call.done()
        release.set()
        return await call

    assert asyncio.run(main()) == "done"


def test_an_error_of_the_call_is_raised_to_the_caller() -> None:
    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(in_thread(fail, "t"))


def test_a_cancelled_caller_leaves_the_call_to_finish(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    results: list[str] = []

    async def main() -> None:
        started = asyncio.Event()
        call = asyncio.ensure_future(
            in_thread(_blocked_until(release, started, results), "cancelled")
        )
        await asyncio.wait_for(started.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()
        [thread] = [t for t in threading.enumerate() if t.name == "cancelled"]
        # The thread's report reaches the loop before the join's own does.
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()

    asyncio.run(main())
    assert results == ["done"]
    # Its result had nobody to go to, and was dropped without an error.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_the_interpreter_waits_for_a_call_under_way_and_a_closed_loop_is_no_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    release = threading.Event()
    results: list[str] = []
    started_calls: list[asyncio.Future[str]] = []

    async def main() -> None:
        started = asyncio.Event()
        started_calls.append(
            asyncio.ensure_future(in_thread(_blocked_until(release, started, results), "t"))
        )
        await asyncio.wait_for(started.wait(), 10)

    asyncio.run(main())
    # The loop is closed; the thread is not a daemon, so it still runs, and its report
    # to the closed loop is dropped.
    [thread] = [t for t in threading.enumerate() if t.name == "t"]
    assert not thread.daemon
    assert thread.is_alive()
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert results == ["done"]
    assert "Exception" not in capfd.readouterr().err

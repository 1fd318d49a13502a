"""A store's blocking call, run in a thread of its own while the event loop goes on.

Why not ``asyncio.to_thread``: it runs the call in the loop's default executor, whose
module (``concurrent.futures.thread``, with ``queue``) and idle worker a node would then
keep for good, for a call it makes once per term. A node saves its term and vote a few
times a day; a thread started for each save, and gone after it, costs a
hundred-odd microseconds each time and nothing in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["in_thread"]

_T = TypeVar("_T")


async def in_thread(function: Callable[[], _T], name: str) -> _T:
    """Return ``function()``, called in a new thread named ``name``.

    The thread is not a daemon: an interpreter that exits waits for it, so a save under
    way is finished rather than cut short. Cancelling the caller does not stop the call;
    its result or error is then dropped.

    Raises:
        Whatever ``function`` raises.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def run() -> None:
        settle: Callable[[], None]
        try:
            result = function()
        except BaseException as exc:
            settle = functools.partial(_fail, future, exc)
        else:
            settle = functools.partial(_succeed, future, result)
        # The loop may have closed meanwhile (the program ended): nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name=name).start()
    return await future


def _succeed(future: asyncio.Future[_T], result: _T) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[_T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)

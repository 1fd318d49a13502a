"""The runtime's view of this node's lease, and the exclusive work that rests on it.

The core reports every change of its lease in its :class:`Output`; the runtime hands it
here before anything else of the batch happens. Exclusive scopes wait here for a lease
that makes them exclusive, and register the work they run, so that a lease that ends
early (a hand-over, a step-down, a close) can stop that work before the batch's messages
leave: the :class:`TimeoutNow` of a hand-over lets another node lead within a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..core._lease import Lease

__all__ = ["LeaseWatch"]


class LeaseWatch:
    """The latest lease, who waits for it to change, and the work that must end with it.

    Args:
        clock: the clock the core is fed (the lease is on its scale).
    """

    __slots__ = ("_clock", "_waiters", "_work", "lease")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.lease: Lease | None = None
        # One future per waiter, so that one that gives up cancels only its own.
        self._waiters: set[asyncio.Future[None]] = set()
        # Exclusive work under way: how to stop it, and the future that says it stopped.
        self._work: dict[asyncio.Future[None], Callable[[], None]] = {}

    def now(self) -> float:
        """The current time on the lease's clock."""
        return self._clock()

    def exclusive(self, term: int) -> bool:
        """Whether this node holds an exclusive lease of ``term`` now."""
        lease = self.lease
        return lease is not None and lease.term == term and lease.exclusive_at(self._clock())

    def shrinks(self, lease: Lease) -> bool:
        """Whether ``lease`` ends sooner than the one in force (work must stop first)."""
        current = self.lease
        return current is not None and lease.until < current.until

    def update(self, lease: Lease) -> Lease | None:
        """Take the core's newest lease; return the one it replaces."""
        previous, self.lease = self.lease, lease
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return previous

    def changed(self) -> asyncio.Future[None]:
        """A new future that completes at the next :meth:`update`; cancel it to give up."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        future.add_done_callback(self._waiters.discard)
        return future

    def register(self, stop: Callable[[], None]) -> asyncio.Future[None]:
        """Exclusive work begins; ``stop()`` asks it to end. Resolve the result when it has."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._work[done] = stop
        done.add_done_callback(lambda future: self._work.pop(future, None))
        return done

    async def stop_work(self, until: float) -> None:
        """Stop all exclusive work, waiting for it no later than ``until`` (when the
        lease it ran under would have run out anyway)."""
        pending = list(self._work)
        for stop in list(self._work.values()):
            with contextlib.suppress(Exception):
                stop()
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, until - self._clock()))

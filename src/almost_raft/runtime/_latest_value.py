"""A latest-value broadcast: how leadership news reaches its readers.

The publisher (the election's task) must never wait for a reader, or a reader that
stops reading would stop the election: hashicorp/raft's blocking ``notifyCh`` deadlocked
Consul and Nomad exactly that way. So a :class:`LatestValue` keeps only the newest value
and a version number; each :class:`Subscription` remembers the version it last returned
and, when read, returns whatever is newest. A slow reader skips intermediate values
(and counts them) but always ends up seeing the current one.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from ..core._errors import ElectionClosed

__all__ = ["LatestValue", "Subscription"]

T = TypeVar("T")


class LatestValue(Generic[T]):
    """Holds the newest value of something and wakes whoever waits for a change.

    :meth:`publish` never blocks and never raises. Equal values are not published
    twice, so every version a reader sees is a real change.

    Args:
        initial: the value before anything is published.
    """

    def __init__(self, initial: T) -> None:
        self._value = initial
        self._version = 0
        self._closed = False
        self._cause: BaseException | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def value(self) -> T:
        """The newest value."""
        return self._value

    @property
    def version(self) -> int:
        """How many changes have been published; grows by one per change."""
        return self._version

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called; no value is published after it."""
        return self._closed

    @property
    def cause(self) -> BaseException | None:
        """The error the publisher failed with, if it closed because of one."""
        return self._cause

    def publish(self, value: T) -> None:
        """Make ``value`` the newest value, unless it equals it or this is closed."""
        if self._closed or value == self._value:
            return
        self._value = value
        self._version += 1
        self._wake()

    def close(self, cause: BaseException | None = None) -> None:
        """Stop publishing; readers get what they have not seen, then the end.

        Args:
            cause: why, if the publisher failed; readers then get :class:`ElectionClosed`
                with this as its ``__cause__`` instead of a quiet end.
        """
        if self._closed:
            return
        self._closed = True
        self._cause = cause
        self._wake()

    def subscribe(self) -> Subscription[T]:
        """A new reader whose first read returns the current value at once."""
        return Subscription(self)

    def changed(self) -> asyncio.Future[None]:
        """A future, on the running loop, done at the next publish or close.

        Cancel it when no longer needed. Its callbacks run from the event loop, never
        inside :meth:`publish`.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_result(None)
        else:
            self._waiters.add(future)
            future.add_done_callback(self._waiters.discard)
        return future

    def closed_error(self) -> ElectionClosed:
        """The error a reader raises once the values have ended."""
        error = ElectionClosed(
            "the election failed" if self._cause is not None else "the election is closed"
        )
        error.__cause__ = self._cause
        return error

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for future in waiters:
            if not future.done():
                future.set_result(None)


class Subscription(Generic[T]):
    """One reader of a :class:`LatestValue`, and an async iterator over its changes.

    The first read returns the value current when the subscription was made; each later
    read waits until there is a newer value than the last one returned and returns the
    newest. Values published in between are skipped, never queued, so a reader can be
    arbitrarily slow without holding anything up; :attr:`skipped` counts them.

    Iteration ends (``StopAsyncIteration``) once the publisher closed normally and the
    last value was returned; it raises :class:`ElectionClosed` if the publisher failed.
    """

    def __init__(self, source: LatestValue[T]) -> None:
        self._source = source
        self._seen = source.version - 1
        self.skipped = 0

    async def next(self) -> T:
        """Return a value newer than the last one returned, waiting for one if needed.

        Raises:
            ElectionClosed: the publisher closed and every value was already returned.
        """
        source = self._source
        while source.version == self._seen:
            if source.closed:
                raise source.closed_error()
            waiter = source.changed()
            try:
                await waiter
            finally:
                waiter.cancel()
        self.skipped += source.version - self._seen - 1
        self._seen = source.version
        return source.value

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.next()
        except ElectionClosed:
            if self._source.cause is None:
                raise StopAsyncIteration from None
            raise

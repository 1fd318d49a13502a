"""Leading under :class:`Election`: :class:`Leadership` (one term's leadership, with its
lease) and :class:`LeadershipScope` (code that runs only while this node leads).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from types import TracebackType

from ..core._errors import LeadershipLost
from ..core._outputs import LeaderChange
from ._driver import Runtime
from ._lease_watch import LeaseWatch

__all__ = ["Leadership", "LeadershipScope"]


@dataclasses.dataclass(frozen=True, slots=True)
class Leadership:
    """This node's leadership of one term.

    Two levels of leadership exist. *Leader known*: this node won ``term``; another node
    may still believe for a moment that it leads an older term, so work that can check a
    fencing token uses ``term``. *Exclusive*: this node also holds a lease, and while it
    does no other node can hold one, for any term (see :attr:`exclusive`).

    Attributes:
        node_id: this node's id.
        term: the term it leads. Terms only grow and at most one node leads each, so the
            term is a fencing token: a resource that remembers the highest term it has
            seen can refuse a deposed leader's late writes.
    """

    node_id: str
    term: int
    _lease: LeaseWatch | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def lease_until(self) -> float | None:
        """When this term's lease ends, on :func:`election_clock`; ``None`` if it has none.

        The lease is renewed with every heartbeat round a majority answers, so this
        moves on while the node stays leader; a lease ended early (a hand-over) reads as
        a time that has passed.
        """
        lease = None if self._lease is None else self._lease.lease
        return lease.until if lease is not None and lease.term == self.term else None

    @property
    def exclusive(self) -> bool:
        """Whether this node is exclusive now, which no other node then is, for any term.

        A node elected meanwhile on evidence that this one died may already know that it
        leads a newer term, but it starts exclusive work only once this lease would have
        run out. That holds while the lease lasts, given that no node's clock runs slower than
        another's by more than ``max_clock_drift`` (see :class:`ElectionConfig`), and
        that the node's process does not run on past the lease unseen: a frozen process
        that wakes up must check this again before it acts (the command-line leader
        command has a watchdog process for that).
        """
        return self._lease is not None and self._lease.exclusive(self.term)

    async def lease_changed(self) -> None:
        """Return when this node's lease next changes (is renewed or ends).

        Raises:
            RuntimeError: this leadership did not come from an election.
        """
        if self._lease is None:
            raise RuntimeError("this Leadership was not given by an election")
        await self._lease.changed()

    def lease_remaining(self) -> float:
        """Seconds left of the lease now; 0 when this node is not exclusive."""
        until = self.lease_until
        if until is None or self._lease is None or not self.exclusive:
            return 0.0
        return max(0.0, until - self._lease.now())


class _ScopeState(enum.Enum):
    CREATED = "created"
    ACTIVE = "active"
    REVOKED = "revoked"
    EXITED = "exited"


class LeadershipScope:
    """What :meth:`Election.leadership` returns; see there."""

    def __init__(self, runtime: Runtime, *, exclusive: bool = False) -> None:
        self._runtime = runtime
        self._exclusive = exclusive
        self._state = _ScopeState.CREATED
        self._leadership: Leadership | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._waiter: asyncio.Future[None] | None = None
        # With ``exclusive``: the lease check at the lease's end, and the future that
        # tells the runtime the body is over.
        self._lease_timer: asyncio.TimerHandle | None = None
        self._work_done: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Leadership:
        if self._state is not _ScopeState.CREATED:
            raise RuntimeError("a leadership scope can be entered only once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a leadership scope must be used inside a task")
        self._runtime.check_open()
        source = self._runtime.leadership
        changes = source.subscribe()
        node_id = self._runtime.node_id
        while True:
            change = await changes.next()
            if source.closed:
                raise source.closed_error()
            if change.leader_id == node_id and (
                not self._exclusive or await self._wait_for_lease(change)
            ):
                break
        self._leadership = Leadership(node_id, change.term, self._runtime.lease)
        self._task = task
        self._cancelling = task.cancelling()
        self._state = _ScopeState.ACTIVE
        # Equal values are never published, so the next publish (or the close) means the
        # leadership of this term is over: the term can only be led once by this node.
        self._waiter = source.changed()
        self._waiter.add_done_callback(self._on_change)
        if self._exclusive:
            self._work_done = self._runtime.lease.register(self._lose)
            self._arm_lease_check()
        return self._leadership

    async def _wait_for_lease(self, change: LeaderChange) -> bool:
        """Wait until this node is exclusive in ``change.term``; ``False`` if it lost it."""
        source = self._runtime.leadership
        watch = self._runtime.lease
        while not watch.exclusive(change.term):
            if source.closed or source.value != change:
                return False
            lease = watch.lease
            delay = None
            if lease is not None and lease.term == change.term:
                now = watch.now()
                if now < lease.start < lease.until:
                    # Votes came early: the lease holds, but exclusive only from ``start``.
                    delay = lease.start - now
            wakers = {watch.changed(), source.changed()}
            await asyncio.wait(wakers, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for waker in wakers:
                waker.cancel()
        return True

    def _arm_lease_check(self) -> None:
        leadership = self._leadership
        assert leadership is not None
        until = leadership.lease_until
        delay = 0.0 if until is None else max(0.0, until - self._runtime.lease.now())
        self._lease_timer = asyncio.get_running_loop().call_later(delay, self._check_lease)

    def _check_lease(self) -> None:
        self._lease_timer = None
        if self._state is not _ScopeState.ACTIVE:
            return
        assert self._leadership is not None
        if self._leadership.exclusive:
            # Renewed meanwhile: look again when the renewed lease would run out.
            self._arm_lease_check()
        else:
            self._lose()

    def _on_change(self, waiter: asyncio.Future[None]) -> None:
        if self._state is not _ScopeState.ACTIVE or waiter.cancelled():
            return
        self._lose()

    def _lose(self) -> None:
        if self._state is not _ScopeState.ACTIVE:
            return
        assert self._task is not None
        self._state = _ScopeState.REVOKED
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state, self._state = self._state, _ScopeState.EXITED
        if self._waiter is not None:
            self._waiter.cancel()
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        if self._work_done is not None and not self._work_done.done():
            self._work_done.set_result(None)
        if state is _ScopeState.REVOKED:
            assert self._task is not None
            assert self._leadership is not None
            # As asyncio.timeout() does: the cancellation is ours to turn into an error
            # only if nobody else asked to cancel the task meanwhile.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise LeadershipLost(self._leadership.term) from exc

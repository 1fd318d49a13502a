"""The asyncio driver of one :class:`ElectionCore`: clock, inputs, store, sends, news.

One task owns the core. It waits for the next input or the core's next deadline, hands
the input to the core and carries out the :class:`Output` batch in its documented order:
the hard state is made durable first (only a candidate's vote requests leave during the
save, and no input reaches the core until it ends), then each message leaves (handed to
the transport's :meth:`~Transport.send_nowait` when it takes it, otherwise in its own task
cut off after ``message_timeout``, so a dead peer never delays the others), then
leadership news is published. Every decision about terms, votes and roles is the core's;
this module only moves inputs in and effects out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable

from ..core._config import ElectionConfig
from ..core._configuration import Configuration, Member
from ..core._errors import ElectionClosed
from ..core._messages import PeerMessage
from ..core._outputs import LeaderChange, Outbound, Output
from ..core._state import HardState, NodeState
from ..core._state_machine import ElectionCore
from ..core._validation import admits_peer
from ..store._store import Store
from ..transport._interface import Transport, close_transport
from ._changes import ChangeRequest, PendingChanges
from ._clock import read_election_clock
from ._in_thread import in_thread
from ._inputs import (
    AddPeer,
    Alarm,
    CarryOut,
    Failed,
    Input,
    InputQueue,
    Leave,
    PeerDisconnected,
    PeerUnreachable,
    RemovePeer,
    StepDown,
)
from ._latest_value import LatestValue
from ._lease_watch import LeaseWatch
from ._lifecycle import Lifecycle, Phase
from ._on_arrival import OnArrival
from ._sender import Sender
from ._status import ElectionStatus, RuntimeMetrics

__all__ = ["MAX_PENDING_INPUTS", "Runtime"]

logger = logging.getLogger("almost_raft.runtime")

_RUNNING = Phase.RUNNING
_IDLE = Phase.IDLE


#: Inputs from the network waiting for the core beyond this many are dropped: a node
#: that cannot keep up must shed load rather than grow without bound.
MAX_PENDING_INPUTS = 10_000


class Runtime(OnArrival):
    """Runs one node's election on the running event loop; implements ``Inbox``.

    Single use: :meth:`start` once, :meth:`close` when done (``close`` is idempotent and
    may be called without ``start``). The runtime owns the transport and the store it is
    given and closes both.

    Args:
        node_id: this node's id (already validated).
        peers: the other voting members at start (already validated).
        transport: carries messages; started by :meth:`start` with this runtime as inbox.
        config: timings and limits.
        store: where the term and vote are kept.
        rng: the randomness of the election timeouts.
        on_leader_change: called, on the event loop's thread, with each leadership
            change right after it is published. It must not block; an exception it raises is
            logged and ignored.
    """

    def __init__(
        self,
        node_id: str,
        peers: Iterable[str],
        transport: Transport,
        config: ElectionConfig,
        store: Store,
        rng: random.Random,
        on_leader_change: Callable[[LeaderChange], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.metrics = RuntimeMetrics()
        self.leadership: LatestValue[LeaderChange] = LatestValue(LeaderChange(None, 0))
        # The core runs on the election clock (CLOCK_BOOTTIME), which leases rest on.
        self._clock = read_election_clock
        self.lease = LeaseWatch(self._clock)
        self._initial_peers = set(peers)
        self._transport = transport
        self._store = store
        self._rng = rng
        self._on_leader_change = on_leader_change
        self._core: ElectionCore | None = None
        self._inputs = InputQueue()
        # The one state of the runtime's life; every public call is judged by it.
        self._life = Lifecycle()
        # The one timer for the core's deadline, and the time it is set for.
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = math.nan
        # The loop start() runs on, kept so that setting the alarm every round does not
        # look it up (a getpid() system call each time).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: asyncio.Task[None] | None = None
        self._sender = Sender(node_id, transport, self.metrics, config.message_timeout)
        self._saving: asyncio.Future[None] | None = None
        # Done once start() has built what close() must release; close() waits for it.
        self._starting: asyncio.Future[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        # When a message last arrived from each peer (time.monotonic), for status(); the core
        # keeps its own record of answers, which is a different thing.
        self._last_arrival: dict[str, float] = {}
        self._changes = PendingChanges()
        #: The configuration in force, published whenever it changes (``None`` until
        #: the node starts); transports that need members' addresses follow it.
        self.configurations: LatestValue[Configuration | None] = LatestValue(None)
        # What configurations holds, read without its property after every batch.
        self._published: Configuration | None = None

    # ------------------------------------------------------------------ status

    @property
    def core(self) -> ElectionCore | None:
        """The core, once :meth:`start` has built it."""
        return self._core

    @property
    def driver(self) -> asyncio.Task[None] | None:
        """The election's task, once :meth:`start` has created it."""
        return self._driver

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called or :meth:`start` failed."""
        return self._life.closed

    @property
    def failure(self) -> BaseException | None:
        """The error the election's task crashed with, if it did (a bug)."""
        return self.leadership.cause

    def status(self) -> ElectionStatus:
        """A snapshot of the election state.

        Before :meth:`start` it shows the configured peers and term 0; the term kept in
        the store is read only when the node starts. Once the election has ended (closed,
        or its task stopped) the role is ``TERMINATING``.
        """
        core = self._core
        if core is None:
            ended = self._life.closed or self._life.phase is Phase.STOPPED
            role = NodeState.TERMINATING if ended else NodeState.FOLLOWER
            return ElectionStatus(
                self.node_id, 0, role, None, None, frozenset(self._initial_peers), False
            )
        peers = core.peers
        now = time.monotonic()
        committed = core.committed_configuration
        return ElectionStatus(
            self.node_id,
            core.term,
            core.role,
            core.leader_id,
            core.voted_for,
            peers,
            core.role is NodeState.LEADER,
            {peer: now - at for peer, at in self._last_arrival.items() if peer in peers},
            core.configuration,
            0 if committed is None else committed.version,
            core.change_pending,
        )

    # ------------------------------------------------------------------ inputs

    def deliver(self, message: PeerMessage) -> None:
        """Inbox: hand a peer's message to the core, or queue it; never blocks.

        While the election's task is idle the core takes the message at once and its
        batch is carried out here, unless the batch needs a save, which the task then
        does (taking no further input until it is done). Otherwise the message waits in
        the task's queue. Either way the core sees inputs one at a time, in order.

        Dropped if the node is not running, and (counted in ``inputs_dropped``) if more
        than ``MAX_PENDING_INPUTS`` inputs are already waiting.
        """
        core = self._core
        if core is None:
            return
        if self._life.phase is _IDLE and not self._inputs.items:
            # IDLE takes input: the common case, judged first.
            self._last_arrival[message.sender] = time.monotonic()
            self._handle_now(core, message)
            return
        if not self._life.takes_input:
            return
        if self._inputs.qsize() >= MAX_PENDING_INPUTS:
            self.metrics.inputs_dropped += 1
            dropped = self.metrics.inputs_dropped
            if dropped == 1 or dropped % 1000 == 0:
                logger.warning(
                    "%s: %d inputs waiting; dropped %r (%d dropped so far)",
                    self.node_id,
                    self._inputs.qsize(),
                    message,
                    dropped,
                )
            return
        self._last_arrival[message.sender] = time.monotonic()
        self._inputs.put_nowait(message)

    def add_peer(self, peer_id: str) -> None:
        """Make ``peer_id`` a voting member (the core may refuse past ``max_nodes``)."""
        self._control(AddPeer(peer_id))

    def remove_peer(self, peer_id: str) -> None:
        """Stop counting ``peer_id`` as a voting member."""
        self._control(RemovePeer(peer_id))

    def change_members(self, kind: str, subject: Member | str) -> asyncio.Future[Configuration]:
        """Ask for a change (``add`` a member, ``remove`` or ``promote`` an id); the
        future gets the committed configuration, or the error (see Election.add_member).
        """
        future: asyncio.Future[Configuration] = asyncio.get_running_loop().create_future()
        if self._core is None or not self._life.takes_input:
            where = "has not started" if self._core is None else "is closed"
            future.set_exception(ElectionClosed(f"{self.node_id}: the election {where}"))
            return future
        self._inputs.put_nowait(ChangeRequest(kind, subject, future))
        return future

    def peer_unreachable(self, peer_id: str) -> None:
        """Inbox: the transport has evidence that ``peer_id``'s process is gone."""
        if self._core is not None and self._life.takes_input:
            self._inputs.put_nowait(PeerUnreachable(peer_id))

    def peer_disconnected(self, peer_id: str) -> None:
        """Inbox: a connection to or from ``peer_id`` was ended by the peer's side."""
        if self._core is not None and self._life.takes_input:
            self._inputs.put_nowait(PeerDisconnected(peer_id))

    def step_down(self) -> None:
        """Stop leading, if leading: hand leadership to a peer (see Election.step_down)."""
        self._control(StepDown())

    def check_open(self) -> None:
        """Raise :class:`ElectionClosed` unless the election may still take part.

        What every call that acts on the election, or waits for it, checks first: it is
        new, starting or running, and neither closed (or closing) nor stopped.
        """
        if self.failure is not None:
            raise ElectionClosed(f"{self.node_id}: the election failed") from self.failure
        if self._life.phase is Phase.STOPPED:
            raise ElectionClosed(f"{self.node_id}: the election's task was stopped")
        if self._life.closed:
            raise ElectionClosed(f"{self.node_id}: the election is closed")

    def _control(self, command: AddPeer | RemovePeer | StepDown) -> None:
        self.check_open()
        if self._core is None:
            # Not started yet (or still loading the store): the core is built from these.
            if isinstance(command, AddPeer):
                others = self._initial_peers - {command.peer_id}
                if not admits_peer(others, self.config):
                    # The rule the core applies to add_peer once it runs.
                    logger.warning(
                        "%s: refused to add peer %s: the cluster already has max_nodes=%s nodes",
                        self.node_id,
                        command.peer_id,
                        self.config.max_nodes,
                    )
                    return
                self._initial_peers.add(command.peer_id)
            elif isinstance(command, RemovePeer):
                self._initial_peers.discard(command.peer_id)
            return
        # Control inputs bypass the bound: they come from this process, not the network.
        self._inputs.put_nowait(command)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the store, build the core, start the transport and the election's task.

        Raises:
            StateFileError: the stored term and vote cannot be trusted; nothing started
                and the runtime is closed.
            ElectionClosed: the runtime was closed before it started.
            RuntimeError: it was already started.
        """
        if self._life.closed:
            raise ElectionClosed(f"{self.node_id}: the election is closed")
        if self._life.phase is not Phase.NEW:
            raise RuntimeError(f"{self.node_id}: the election was already started")
        self._life.move(Phase.STARTING)
        loop = self._loop = asyncio.get_running_loop()
        starting = self._starting = loop.create_future()
        try:
            try:
                if self._store.blocking:
                    hard_state = await in_thread(self._store.load, f"{self.node_id}: load")
                else:
                    hard_state = self._store.load()
                self._core = ElectionCore(
                    self.node_id,
                    self._initial_peers,
                    self.config,
                    self._rng,
                    self._clock(),
                    hard_state,
                )
                self.leadership.publish(LeaderChange(None, self._core.term))
                await self._transport.start(self.node_id, self)
                if self._life.closed:
                    raise ElectionClosed(f"{self.node_id}: closed while starting")
            finally:
                # close() waits for this before it looks for the election's task.
                starting.set_result(None)
        except BaseException:
            await self.close()
            raise
        self._life.move(Phase.RUNNING)
        self._driver = loop.create_task(self._drive(), name=f"almost-raft election {self.node_id}")
        self._driver.add_done_callback(self._driver_done)
        logger.info(
            "%s: started at term %d with peers %s",
            self.node_id,
            self._core.term,
            sorted(self._core.peers),
        )

    async def close(self, *, hand_over: bool = True) -> None:
        """Leave the election and release the transport and the store.

        A leader first hands leadership to a peer (``hand_over``) and gives that message
        up to ``message_timeout`` to leave. Idempotent; safe to call before
        :meth:`start`. The cleanup runs in its own task and finishes even if the caller
        is cancelled while waiting for it.
        """
        if self._closing is None:
            # The phase moves now, so every call made after this one sees a closed election.
            self._life.move(Phase.LEAVING if self._life.running else Phase.CLOSING)
            self._closing = asyncio.get_running_loop().create_task(
                self._close(hand_over), name=f"almost-raft close {self.node_id}"
            )
            self._closing.add_done_callback(_log_close_failure)
        await asyncio.shield(self._closing)

    async def _close(self, hand_over: bool) -> None:
        if self._starting is not None:
            await asyncio.wait({self._starting})
        driver = self._driver
        if self._life.phase is Phase.LEAVING:
            assert driver is not None, "a running election has its task"
            self._inputs.put_nowait(Leave(hand_over))
            try:
                await asyncio.wait({driver})
            finally:
                driver.cancel()
        if self._life.phase is not Phase.CLOSING:
            # The leave ended, or the task stopped (STOPPED) before it began or on the
            # way: asyncio.run's teardown cancels every task, the election's among them,
            # possibly between close() and this task's first step.
            self._life.move(Phase.CLOSING)
        core = self._core
        if core is not None and core.role is not NodeState.TERMINATING:
            # The election's task never ran or died: nobody else owns the core now.
            change = self._terminate_here(core)
            if change is not None:
                self.leadership.publish(change)
        await self._sender.drain()
        try:
            await close_transport(self._transport, self.config.message_timeout)
        except Exception:
            logger.exception("%s: closing the transport failed", self.node_id)
        if self._saving is not None:
            # The store must not be closed under a save still running in its thread.
            await asyncio.wait({self._saving})
        try:
            self._store.close()
        except Exception:
            logger.exception("%s: closing the store failed", self.node_id)
        self.leadership.close(self.failure)
        self.configurations.close()
        self._life.move(Phase.CLOSED)
        logger.info("%s: closed", self.node_id)

    def _driver_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        self._changes.close(self.node_id)
        if error is None and not task.cancelled():
            if self._life.running:
                # The core ended by itself: its configuration removed this node. The
                # election is over, as if its task had stopped; close() releases the rest.
                logger.info("%s: removed from the cluster; the election has ended", self.node_id)
                self._life.move(Phase.STOPPED)
                self.leadership.close()
            # Otherwise the core's leave ended; close() goes on from here.
            return
        if error is not None:
            logger.error("%s: the election task failed", self.node_id, exc_info=error)
        # Cancelled (as asyncio.run cancels what is left when it returns) or crashed:
        # nobody owns the core now, so it ends here, and with it the leadership.
        self._life.move(Phase.STOPPED)
        core = self._core
        assert core is not None, "the task runs only after start() built the core"
        if core.role is not NodeState.TERMINATING:
            change = self._terminate_here(core)
            if change is not None:
                self.leadership.publish(change)
        self.leadership.close(error)

    # ------------------------------------------------------------------ the driver

    def _terminate_here(self, core: ElectionCore) -> LeaderChange | None:
        """End the core outside the driver (it never ran, or it stopped)."""
        output = core.terminate(self._clock())
        if output.lease is not None:
            self.lease.update(output.lease)
        return output.leader_change

    async def _drive(self) -> None:
        core = self._core
        assert core is not None, "the driver runs only after start() built the core"
        clock = self._clock
        try:
            while core.role is not NodeState.TERMINATING:
                if clock() >= core.next_deadline:
                    await self._carry_out(core.tick(clock()))
                    continue
                item = await self._next_input(core)
                output = self._step(core, item, clock())
                if output is not None:
                    await self._carry_out(output)
        finally:
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None

    async def _next_input(self, core: ElectionCore) -> Input:
        """The next input; while none is queued, wait with the alarm set.

        One timer for the core's deadline (the alarm), moved only when the deadline
        moves. A timeout around each wait would add and cancel a timer for every
        message: a leader's deadline (its next heartbeat) stays put while the answers
        come in.
        """
        try:
            return self._inputs.get_nowait()
        except asyncio.QueueEmpty:
            pass
        self._set_alarm(core.next_deadline)
        # Only a running election takes messages on arrival; a leaving one queues them,
        # which costs a turn of the loop and nothing else.
        if self._life.phase is Phase.RUNNING:
            self._life.move(Phase.IDLE)
        try:
            return await self._inputs.get()
        finally:
            if self._life.phase is Phase.IDLE:
                self._life.move(Phase.RUNNING)

    def _step(self, core: ElectionCore, item: Input, now: float) -> Output | None:
        """Hand one input to the core and return its batch; the driver's own have none."""
        if isinstance(item, Alarm):
            # Rang, or stale: either way the next wait sets the alarm anew.
            self._alarm_at = math.nan
            return None
        if isinstance(item, CarryOut):
            return item.output
        if isinstance(item, Failed):
            raise item.error
        if isinstance(item, PeerMessage):
            return core.receive(item, now)
        if isinstance(item, AddPeer):
            return core.add_peer(item.peer_id, now)
        if isinstance(item, RemovePeer):
            return core.remove_peer(item.peer_id, now)
        if isinstance(item, StepDown):
            return core.step_down(now)
        if isinstance(item, PeerUnreachable):
            return core.peer_unreachable(item.peer_id, now)
        if isinstance(item, PeerDisconnected):
            return core.peer_disconnected(item.peer_id, now)
        if isinstance(item, ChangeRequest):
            # A refused change goes to its caller and makes no batch.
            return self._changes.apply(core, item, now)
        # The core decides how long a leaving leader stays (see leave()).
        return core.leave(now, hand_over=item.hand_over)

    async def _carry_out(self, output: Output) -> None:
        """Carry out one batch in the order :class:`Output` prescribes."""
        if output.lease is not None:
            previous = self.lease.update(output.lease)
            if previous is not None and output.lease.until < previous.until:
                # The lease ended early (a hand-over, a step-down): the exclusive work it
                # covered stops before any message leaves, or by the old lease's end.
                await self.lease.stop_work(previous.until)
        if output.hard_state is None:
            self._finish_batch(output.messages, output.leader_change)
            return
        # A candidate's vote requests leave while its new term and own vote are saved, so
        # the voters' saves overlap this one. The driver takes no input until the save
        # ends, so no answer counts towards leadership before the node's own vote is
        # durable.
        self._sender.send_all(output.before_save())
        await self._persist(output.hard_state)
        self._finish_batch(output.after_save(), output.leader_change)

    def _finish_batch(self, messages: tuple[Outbound, ...], change: LeaderChange | None) -> None:
        """Send a batch's messages and publish its news: what follows any save."""
        if messages:
            self._sender.send_all(messages)
        core = self._core
        if core is not None:
            # A configuration counts as committed only once this batch's save is done.
            self._settle_and_publish(core)
        if change is not None:
            self.leadership.publish(change)
            if self._on_leader_change is not None:
                try:
                    self._on_leader_change(change)
                except Exception:
                    logger.exception("%s: the leader-change callback failed", self.node_id)

    def _settle_and_publish(self, core: ElectionCore) -> None:
        """Settle the member changes waiting for a commit, and publish a configuration
        that changed."""
        changes = self._changes
        if changes.waiting:
            changes.settle(core)
        configuration = core.configuration
        if configuration is not self._published:
            self._published = configuration
            self.configurations.publish(configuration)

    async def _persist(self, state: HardState) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self._store.blocking:
            self._store.save(state)
        else:
            # A real store fsyncs; a worker thread keeps the loop (and its timers) running.
            # Shielded, so a cancelled driver still lets close() wait for the save to end.
            self._saving = asyncio.ensure_future(
                in_thread(functools.partial(self._store.save, state), f"{self.node_id}: save")
            )
            await asyncio.shield(self._saving)
            self._saving = None
        self.metrics.state_saves += 1
        if self._core is not None:
            # The voters' saves lengthen every vote round; the core spaces retries by it.
            self._core.round_trips.note_save(loop.time() - started, self._clock())


def _log_close_failure(task: asyncio.Task[None]) -> None:
    # Retrieve the result so an error of a close whose caller was cancelled is not lost.
    with contextlib.suppress(asyncio.CancelledError):
        error = task.exception()
        if error is not None:
            logger.error("closing the election failed", exc_info=error)

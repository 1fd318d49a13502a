"""Inputs handled on arrival, in the caller's stack, while the election's task is idle.

:class:`~._driver.Runtime` inherits this. A message from the transport, and the alarm
that rings at the core's next deadline, reach the core at once when the task waits for
input: that saves the event loop a turn and a queue per message (a heartbeat and its
answer cost a follower one wake-up, a leader's round one). The batch is carried out
here too, unless the driver must see it: a save, a lease that shrinks, the end of the
election. Those, and every input that comes while the task is busy, go through the
task's queue, so the core still sees inputs one at a time, in order.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from ..core._messages import PeerMessage
from ..core._state import NodeState
from ._inputs import ALARM, CarryOut, Failed
from ._lifecycle import Phase

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core._outputs import LeaderChange, Outbound, Output
    from ..core._state_machine import ElectionCore
    from ._inputs import InputQueue
    from ._lease_watch import LeaseWatch
    from ._lifecycle import Lifecycle

__all__ = ["OnArrival"]

_RUNNING = Phase.RUNNING
_IDLE = Phase.IDLE


class OnArrival:
    """The on-arrival half of :class:`~._driver.Runtime`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by Runtime.
        lease: LeaseWatch
        _clock: Callable[[], float]
        _core: ElectionCore | None
        _inputs: InputQueue
        _life: Lifecycle
        _alarm: asyncio.TimerHandle | None
        _alarm_at: float
        _loop: asyncio.AbstractEventLoop | None

        def _settle_and_publish(self, core: ElectionCore) -> None: ...
        def _finish_batch(
            self, messages: tuple[Outbound, ...], change: LeaderChange | None
        ) -> None: ...

    def _handle_now(self, core: ElectionCore, message: PeerMessage) -> None:
        """Give ``message`` to the idle core and carry out what needs no save.

        This saves the event loop a turn (and a queue) per message: a heartbeat and its
        answer cost the follower one wake-up. Anything the driver must see first goes
        through the queue instead: a deadline that has passed, or a batch with a save.

        It runs inside the transport's delivery, so nothing may escape into it: whatever
        fails here, in the core, a send or a leadership reader, fails the election as if
        its task had made the call, and the connection that carried the message lives on.
        Meanwhile the phase is RUNNING, so a message that a send delivers back to this
        node re-entrantly waits in the queue instead of overtaking this batch.
        """
        now = self._clock()
        if now >= core.next_deadline:
            self._inputs.put_nowait(message)
            return
        life = self._life
        # IDLE to RUNNING and back, the moves of every message: set rather than judged
        # by the table (deliver() came here from IDLE).
        life.phase = _RUNNING
        try:
            output = core.receive(message, now)
            if (
                output.hard_state is None
                and output.lease is None
                and not output.messages
                and output.leader_change is None
            ):
                # What most of a leader's answers make: nothing to save, send or tell.
                self._settle_and_publish(core)
                if output.next_deadline < self._alarm_at:
                    self._set_alarm(output.next_deadline)
            else:
                self._finish_now(core, output)
        except BaseException as error:
            self._fail(error)
            return
        if life.phase is _RUNNING and not self._inputs.items:
            life.phase = _IDLE

    def _ring(self) -> None:
        """The alarm rang: while the task is idle, tick the core here, as a message is
        handled on arrival.

        A leader's alarm rings every heartbeat interval; waking the election's task for
        it would cost the loop a second turn, and a queue, per round. A batch the driver
        must see (a save, a lease that shrinks, the end of the election) still goes
        through the queue, and so does the alarm itself whenever the task is busy.
        """
        self._alarm = None
        self._alarm_at = math.nan
        core = self._core
        if (
            core is None
            or core.role is NodeState.TERMINATING
            or self._life.phase is not Phase.IDLE
            or self._inputs.items
        ):
            # The task is busy, or has an ended election to see out: it takes the alarm.
            self._inputs.put_nowait(ALARM)
            return
        now = self._clock()
        deadline = core.next_deadline
        if now >= deadline:
            life = self._life
            life.phase = _RUNNING
            try:
                output = core.tick(now)
                if output.role is NodeState.TERMINATING:
                    # The driver's loop ends with this batch.
                    self._inputs.put_nowait(CarryOut(output))
                    return
                self._finish_now(core, output)
            except BaseException as error:
                self._fail(error)
                return
            if life.phase is not _RUNNING or self._inputs.items:
                return
            life.phase = _IDLE
            deadline = output.next_deadline
        # Rang early (the loop's clock is not the election clock), or ticked: wait anew.
        self._set_alarm(deadline)

    def _fail(self, error: BaseException) -> None:
        """What failed outside the task fails the election, as if the task had failed;
        an interrupt also goes on up the caller's stack, which must stop too."""
        self._inputs.put_nowait(Failed(error))
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise error

    def _finish_now(self, core: ElectionCore, output: Output) -> None:
        """Carry out a batch made outside the driver, unless the driver must."""
        if output.hard_state is not None or (
            output.lease is not None and self.lease.shrinks(output.lease)
        ):
            # A save, or exclusive work to stop before the messages leave: the
            # driver waits for either, and takes no input meanwhile.
            self._inputs.put_nowait(CarryOut(output))
            return
        if output.lease is not None:
            self.lease.update(output.lease)
        self._finish_batch(output.messages, output.leader_change)
        if output.next_deadline < self._alarm_at:
            # A later deadline can wait: the alarm rings early and the driver sets it
            # anew.
            self._set_alarm(output.next_deadline)

    def _set_alarm(self, deadline: float) -> None:
        if deadline == self._alarm_at:
            return
        if self._alarm is not None:
            self._alarm.cancel()
        loop = self._loop
        assert loop is not None, "the alarm is set only once start() has run"
        # The loop's timers run on its own clock; the deadline is on the election clock.
        self._alarm = (
            loop.call_later(max(0.0, deadline - self._clock()), self._ring)
            if math.isfinite(deadline)
            else None
        )
        self._alarm_at = deadline

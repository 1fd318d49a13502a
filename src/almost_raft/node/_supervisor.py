"""The leader command's lifecycle: one loop that owns its tasks.

Forever: wait until this node leads (by default: until it holds a lease, so that no other
node can lead any term), start the command, and keep it while leadership lasts. While it
runs, every renewal of the lease moves the watchdog's deadlines on: SIGTERM at the end of
the lease less the grace, SIGKILL at its end. The grace is cut so that the SIGTERM never
comes before the next renewal is due, judged by how late the latest renewals came. If the
node stalls or is cut off, the watchdog acts on them without the node; if leadership ends
in a way the node sees (news of a newer term, a hand-over, a shutdown), the node sends
SIGTERM at once and the watchdog still kills the group at the lease's end. A hand-over
waits for the command to be gone (up to that end) before the next leader is told to take
over.

A command that exits by itself while this node leads makes the node step down, or with
``restart`` is started again after a backoff that doubles with every failure in a row,
failed spawns included; a run that lasted longer than the longest backoff resets it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
from typing import Literal

from ..core._errors import ElectionClosed, LeadershipLost
from ..runtime._clock import election_clock
from ..runtime._election import Election, Leadership
from ._leader_command import LeaderCommand
from ._watchdog import Watchdog

__all__ = [
    "CommandCounts",
    "CommandSupervisor",
    "OnCommandExit",
    "effective_grace",
    "grace_before_renewal",
    "restart_delay",
]

logger = logging.getLogger("almost_raft.command")

OnCommandExit = Literal["step-down", "restart"]

#: Restarting a command that keeps failing waits this long at first, doubling up to the max.
RESTART_BACKOFF = (0.5, 30.0)


def restart_delay(failures: int) -> float:
    """The wait before the next start after ``failures`` failures in a row (1 or more)."""
    low, high = RESTART_BACKOFF
    return float(min(high, low * 2.0 ** min(max(failures - 1, 0), 32)))


def effective_grace(grace: float, lease_duration: float) -> float:
    """The grace an exclusive command gets: at most half a lease.

    When the node cannot renew its lease, the command has at most the rest of the lease
    to stop; half leaves the other half for renewals that are merely late.
    """
    return min(grace, lease_duration / 2)


#: How many of the latest renewals the grace is judged by (about a second of them).
RENEWALS_REMEMBERED = 20


def grace_before_renewal(
    grace: float, lease_duration: float, heartbeat_interval: float, lag: float
) -> float:
    """The grace a renewal gives an exclusive command: at most ``grace``, and never so
    much that its SIGTERM would come before the next renewal is due.

    A lease counts from the time its heartbeat round was sent and reaches this node
    ``lag`` seconds later (a majority's round trip, and the loop's turn). The next round
    leaves a heartbeat interval after this one, so its renewal finds this lease with
    ``lease_duration - heartbeat_interval - lag`` left; a quarter interval of that is
    kept for jitter. Over links whose round trip is a large part of the election timeout
    little or nothing is left, and the command is then stopped only at the lease's end.
    """
    headroom = lease_duration - heartbeat_interval * 1.25 - lag
    return max(0.0, min(grace, headroom))


@dataclasses.dataclass(frozen=True, slots=True)
class CommandCounts:
    """What the leader command has done since the node started, for ``/metrics``.

    Attributes:
        running: whether it runs now.
        starts: how many times it was started.
        lease_lapses: how many runs the watchdog stopped because the lease ran out before
            its renewal (lost packets, a stall) while the node went on leading.
        exits: how many runs ended by themselves while the node led.
    """

    running: bool
    starts: int
    lease_lapses: int
    exits: int


class CommandSupervisor:
    """Runs ``command`` while ``election`` makes this node leader; see the module docstring.

    Args:
        election: this node's election.
        command: the command to run.
        on_exit: what to do when the command exits by itself while leader.
        watchdog: the started watchdog; with one, the command runs exclusively (only
            under a lease), without one whenever this node is leader.
    """

    def __init__(
        self,
        election: Election,
        command: LeaderCommand,
        *,
        on_exit: OnCommandExit = "step-down",
        watchdog: Watchdog | None = None,
    ) -> None:
        self._election = election
        self._command = command
        self._on_exit = on_exit
        self._watchdog = watchdog
        self._grace = (
            command.grace
            if watchdog is None
            else effective_grace(command.grace, election.config.lease_duration)
        )
        self.failures = 0
        self.lease_lapses = 0
        self.exits = 0
        self._renewed_until = 0.0
        # The SIGTERM deadline the watchdog was last given, and whether one passed while
        # the command ran (a renewal that comes after it cannot call the SIGTERM back).
        self._term_at = math.inf
        self._term_was_due = False
        # How late the latest renewals came after their rounds left (see _renew).
        self._lags: collections.deque[float] = collections.deque(maxlen=RENEWALS_REMEMBERED)

    def counts(self) -> CommandCounts:
        """What the command has done so far."""
        command = self._command
        return CommandCounts(command.running, command.starts, self.lease_lapses, self.exits)

    @property
    def exclusive(self) -> bool:
        """Whether the command runs only under a lease."""
        return self._watchdog is not None

    async def run(self) -> None:
        """Supervise until the election closes."""
        while True:
            try:
                async with self._election.leadership(exclusive=self.exclusive) as leadership:
                    await self._lead(leadership)
            except LeadershipLost as lost:
                logger.info("leadership of term %d ended; the command is stopped", lost.term)
            except ElectionClosed:
                return

    async def _lead(self, leadership: Leadership) -> None:
        """Run the command for as long as ``leadership`` lasts (cancelled when it ends)."""
        while True:
            started = election_clock()
            logger.info(
                "%s term %d: starting the leader command",
                "holding the lease of" if self.exclusive else "leading",
                leadership.term,
            )
            announce = None
            if self._watchdog is not None:
                # The watchdog has the command's deadlines before its program runs.
                self._term_at, self._renewed_until = self._first_deadlines(leadership)
                announce = self._watchdog.announcement(self._term_at, self._renewed_until)
            try:
                await self._command.start(leadership.term, before_exec=announce)
            except OSError as exc:
                if self._watchdog is not None:
                    self._watchdog.release()
                self.failures += 1
                logger.error("cannot start the leader command %r: %s", self._command.argv[0], exc)
            else:
                code = await self._run(leadership)
                if self._stopped_by_watchdog():
                    self.lease_lapses += 1
                    # Not the command failing: the lease ran out before a renewal came
                    # (lost packets), and the watchdog stopped it as it must. Leadership
                    # may well go on: start again under the next lease, or, if none comes
                    # in time, the scope ends this leadership at the lease's end.
                    logger.warning(
                        "the lease of term %d ran out before its renewal: the command was "
                        "stopped, and starts again once this node holds the lease",
                        leadership.term,
                    )
                    while not leadership.exclusive:
                        await leadership.lease_changed()
                    continue
                self.exits += 1
                ran_for = election_clock() - started
                self.failures = 0 if ran_for > RESTART_BACKOFF[1] else self.failures + 1
                logger.warning(
                    "the leader command exited with status %d while leader of term %d",
                    code,
                    leadership.term,
                )
            if self._on_exit == "step-down":
                logger.warning("stepping down, so that another node runs the command")
                self._election.step_down()
                # Leadership is over in a moment, and this task is cancelled with it.
                await asyncio.get_running_loop().create_future()
            delay = restart_delay(self.failures)
            logger.info("restarting the leader command in %.1fs", delay)
            await asyncio.sleep(delay)

    async def _run(self, leadership: Leadership) -> int:
        """Wait for the command to exit, renewing the watchdog; stop it if cancelled."""
        command = self._command
        watchdog = self._watchdog
        assert command.pid is not None, "the command was just started"
        self._term_was_due = False
        try:
            async with asyncio.TaskGroup() as tasks:
                renewer = None
                if watchdog is not None:
                    renewer = tasks.create_task(self._renew(leadership, watchdog))
                code = await command.wait()
                if renewer is not None:
                    renewer.cancel()
            return code
        finally:
            if watchdog is None:
                await self._stop(None)
            else:
                # The end of the latest lease the watchdog was told of: the command dies
                # by then, even when the lease ended early (a hand-over).
                await self._stop(self._renewed_until)
                with contextlib.suppress(Exception):
                    watchdog.release()

    def _first_deadlines(self, leadership: Leadership) -> tuple[float, float]:
        """The SIGTERM and SIGKILL deadlines a command starts with: those of the lease it
        starts under, judged as a renewal that came now would be (the lease in force is
        as old as one). Without a lease both are now: the command is stopped at once."""
        now = election_clock()
        until = leadership.lease_until
        if until is None or not leadership.exclusive:
            return now, now
        return self._sigterm_at(until, now), until

    def _sigterm_at(self, until: float, now: float) -> float:
        """When to SIGTERM under a lease ending at ``until`` that reached this node at
        ``now``; remembers how late it came (the round it counts from left a lease
        before its end), so that no SIGTERM is due before the next renewal."""
        config = self._election.config
        self._lags.append(now - (until - config.lease_duration))
        grace = grace_before_renewal(
            self._grace, config.lease_duration, config.heartbeat_interval, max(self._lags)
        )
        return until - grace

    async def _renew(self, leadership: Leadership, watchdog: Watchdog) -> None:
        while True:
            until = leadership.lease_until
            if until is not None and until > self._renewed_until and leadership.exclusive:
                self._renewed_until = until
                now = election_clock()
                if now >= self._term_at:
                    self._term_was_due = True
                self._term_at = self._sigterm_at(until, now)
                watchdog.renew(self._term_at, until)
            await leadership.lease_changed()

    def _stopped_by_watchdog(self) -> bool:
        """Whether the command ended once the watchdog's SIGTERM was due: at a lease's end
        it is told to stop, and may well exit cleanly (status 0) when it is."""
        return self._watchdog is not None and (
            self._term_was_due or election_clock() >= self._term_at
        )

    async def _stop(self, kill_at: float | None) -> None:
        """Stop the command now: SIGTERM, and SIGKILL at ``kill_at`` at the latest."""
        if not self._command.running:
            return
        if self._watchdog is None or kill_at is None:
            await self._command.stop(self._grace)
            return
        with contextlib.suppress(Exception):
            # The watchdog kills the group at the lease's end even if this node stalls.
            self._watchdog.renew(election_clock(), kill_at)
        await self._command.stop(max(0.0, kill_at - election_clock()))

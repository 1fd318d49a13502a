"""The watchdog process and the command supervisor that renews it.

Real processes and real time: each test polls with generous deadlines and asserts what
happened (who is alive, in which order), never how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from almost_raft import Election, ElectionConfig, InMemoryNetwork, election_clock
from almost_raft.node import _supervisor
from almost_raft.node._leader_command import LeaderCommand
from almost_raft.node._supervisor import (
    CommandSupervisor,
    effective_grace,
    grace_before_renewal,
    restart_delay,
)
from almost_raft.node._watchdog import Watchdog
from helpers.cluster import wait_until

PY = sys.executable
DEADLINE = 10.0
# Ignores SIGTERM, so only a SIGKILL ends it.
STUBBORN = (
    "import signal\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    signal.pause()\n"
)
ONE_NODE = ElectionConfig(election_timeout=0.2, heartbeat_interval=0.02)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def _stubborn_group() -> subprocess.Popen[bytes]:
    """A process group that ignores SIGTERM, once it does."""
    child = subprocess.Popen([PY, "-c", STUBBORN], start_new_session=True, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    child.stdout.close()
    return child


def test_the_watchdog_kills_a_group_that_ignores_sigterm_when_renewals_stop() -> None:
    async def main() -> None:
        watchdog = Watchdog()
        await watchdog.start()
        child = _stubborn_group()
        try:
            now = election_clock()
            watchdog.watch(child.pid, now + 0.05, now + 0.2)
            await wait_until(lambda: child.poll() is not None, what="the SIGKILL")
            assert child.returncode == -signal.SIGKILL
            assert election_clock() >= now + 0.2
        finally:
            child.kill()
            child.wait()
            await watchdog.close()

    asyncio.run(main())


def test_renewals_keep_the_group_alive_and_release_lets_it_go() -> None:
    async def main() -> None:
        watchdog = Watchdog()
        await watchdog.start()
        child = _stubborn_group()
        try:
            now = election_clock()
            watchdog.watch(child.pid, now + 0.05, now + 0.1)
            # Renewed every 20 ms, five times within each renewal's SIGKILL deadline.
            for _ in range(20):
                now = election_clock()
                kill_at = now + 0.1
                watchdog.renew(now + 0.05, kill_at)
                await asyncio.sleep(0.02)
            watchdog.release()
            await wait_until(lambda: election_clock() > kill_at, what="the last deadline")
            # The end of its input makes the watchdog SIGKILL what it watches and exit,
            # so once it has exited the group is alive only if the release let it go.
            process = watchdog._process
            assert process is not None
            assert process.stdin is not None
            process.stdin.close()
            assert await asyncio.wait_for(process.wait(), DEADLINE) == 0
            assert child.poll() is None, "the watchdog killed a group it had released"
        finally:
            child.kill()
            child.wait()
            await watchdog.close()

    asyncio.run(main())


def test_the_watchdog_kills_the_group_at_once_when_the_node_dies() -> None:
    child = _stubborn_group()
    watchdog = subprocess.Popen(
        [PY, "-I", _supervisor.__file__.replace("_supervisor.py", "_watchdog.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert watchdog.stdout is not None
        assert watchdog.stdin is not None
        assert watchdog.stdout.readline() == b"ready\n"
        far = election_clock() + 600
        watchdog.stdin.write(f"group {child.pid} {far} {far}\n".encode())
        watchdog.stdin.flush()
        watchdog.stdin.close()  # as the node's death closes it
        assert child.wait(timeout=DEADLINE) == -signal.SIGKILL
        assert watchdog.wait(timeout=DEADLINE) == 0
    finally:
        child.kill()
        child.wait()
        watchdog.kill()
        watchdog.wait()
        for pipe in (watchdog.stdin, watchdog.stdout):
            if pipe is not None:
                pipe.close()


def test_the_watchdog_is_not_stopped_with_the_nodes_process_group() -> None:
    async def main() -> None:
        watchdog = Watchdog()
        await watchdog.start()
        try:
            assert watchdog.pid is not None
            assert os.getpgid(watchdog.pid) != os.getpgid(0)
        finally:
            await watchdog.close()
        assert watchdog.pid is None

    asyncio.run(main())


def test_restart_backoff_doubles_with_every_failure_up_to_its_cap() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert restart_delay(10_000) == 30


def test_an_exclusive_command_gets_at_most_half_a_lease_of_grace() -> None:
    assert effective_grace(10.0, 0.94) == pytest.approx(0.47)
    assert effective_grace(0.1, 0.94) == 0.1


def test_a_renewal_never_gives_a_grace_that_ends_before_the_next_renewal_is_due() -> None:
    # 150 ms timeouts and 50 ms heartbeats: a lease of 0.1410 s, half of it 0.0705 s.
    lease, heartbeat = 0.1410, 0.05
    # On loopback the lease comes at once and the half-lease cap holds.
    assert grace_before_renewal(0.0705, lease, heartbeat, 0.001) == pytest.approx(0.0705)
    # A 50 ms round trip: the next renewal finds 41 ms of this lease left, so a SIGTERM at
    # 70 ms before its end would stop a command whose node still leads.
    grace = grace_before_renewal(0.0705, lease, heartbeat, 0.05)
    assert grace == pytest.approx(lease - 1.25 * heartbeat - 0.05)
    assert grace < lease - heartbeat - 0.05
    # Round trips that take the whole lease leave none: SIGTERM comes with SIGKILL.
    assert grace_before_renewal(0.0705, lease, heartbeat, 0.2) == 0.0
    # At the default timings (0.94 s lease, 0.1 s heartbeats) nothing changes.
    assert grace_before_renewal(0.47, 0.94, 0.1, 0.05) == 0.47


class _Renewals:
    """A watchdog that records its deadlines, and a leadership whose leases come late."""

    def __init__(self, config: ElectionConfig, lag: float, count: int) -> None:
        self.config = config
        self.exclusive = True
        self.lag = lag
        self.count = count
        self.deadlines: list[tuple[float, float, float]] = []
        self.sent = election_clock() - lag
        self.lease_until: float | None = self.sent + config.lease_duration
        self.done = asyncio.Event()

    def renew(self, term_at: float, kill_at: float) -> None:
        self.deadlines.append((term_at, kill_at, self.sent))

    async def lease_changed(self) -> None:
        if len(self.deadlines) >= self.count:
            self.done.set()
            await asyncio.get_running_loop().create_future()
        # The next round's lease, reaching this node ``lag`` after its round left (and
        # always later than the last one, as a renewal is).
        self.sent = max(election_clock() - self.lag, self.sent + 1e-6)
        self.lease_until = self.sent + self.config.lease_duration


def test_the_watchdog_never_sigterms_before_the_next_renewal_is_due() -> None:
    config = ElectionConfig(
        election_timeout=0.15, election_timeout_max=0.3, heartbeat_interval=0.05
    )

    async def main() -> None:
        election = Election(
            "a", [], InMemoryNetwork().transport("a"), config=config, rng=random.Random(1)
        )
        command = LeaderCommand(["true"], node_id="a")
        fake = _Renewals(config, lag=0.05, count=5)
        supervisor = CommandSupervisor(election, command, watchdog=fake)  # type: ignore[arg-type]
        task = asyncio.create_task(supervisor._renew(fake, fake))  # type: ignore[arg-type]
        await asyncio.wait_for(fake.done.wait(), 5.0)
        task.cancel()
        for term_at, kill_at, sent in fake.deadlines:
            assert kill_at == pytest.approx(sent + config.lease_duration)
            # The next round leaves a heartbeat interval after this one and its lease
            # arrives ``lag`` later: SIGTERM must not come before then.
            assert term_at >= sent + config.heartbeat_interval + fake.lag

    asyncio.run(main())


def test_a_missing_program_is_retried_with_backoff_and_never_recurses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_supervisor, "RESTART_BACKOFF", (0.001, 0.004))

    async def main() -> None:
        election = Election(
            "a", [], InMemoryNetwork().transport("a"), config=ONE_NODE, rng=random.Random(1)
        )
        command = LeaderCommand(["/nonexistent/program"], node_id="a")
        supervisor = CommandSupervisor(election, command, on_exit="restart")
        async with election:
            task = asyncio.create_task(supervisor.run())
            await wait_until(lambda: supervisor.failures >= 50, what="50 failed starts")
            assert not task.done()
        await asyncio.wait_for(task, DEADLINE)

    asyncio.run(main())


def test_an_exclusive_command_runs_under_the_lease_and_is_gone_when_the_node_closes(
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    script = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(started)!r}, 'w').write('x')\n"
        "while True:\n"
        "    signal.pause()\n"
    )

    async def main() -> None:
        election = Election(
            "a", [], InMemoryNetwork().transport("a"), config=ONE_NODE, rng=random.Random(2)
        )
        command = LeaderCommand([PY, "-c", script], node_id="a", grace=5.0)
        watchdog = Watchdog()
        await watchdog.start()
        supervisor = CommandSupervisor(election, command, watchdog=watchdog)
        assert supervisor.exclusive
        await election.start()
        task = asyncio.create_task(supervisor.run())
        try:
            await wait_until(started.exists, what="the command to start")
            pid = command.pid
            assert pid is not None
            # Closing ends the lease; the command ignores SIGTERM, so it dies of the
            # SIGKILL at the lease's end, which close() waits for.
            await election.close()
            await wait_until(lambda: _gone(pid), what="the SIGKILLed command to be gone")
        finally:
            await election.close()
            await asyncio.wait_for(task, DEADLINE)
            await command.stop(0.0)
            await watchdog.close()

    asyncio.run(main())


async def _end(
    task: asyncio.Task[None], command: LeaderCommand, watchdog: Watchdog | None = None
) -> None:
    """Cancel a supervisor's task, then stop its command and its watchdog."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await command.stop(0.0)
    if watchdog is not None:
        await watchdog.close()


class _LapsingLease:
    """A leadership of term 1 whose lease is renewed only when the test says so."""

    term = 1

    def __init__(self, config: ElectionConfig) -> None:
        self.config = config
        self.lease_until: float | None = election_clock() + config.lease_duration
        self._renewed = asyncio.Event()

    @property
    def exclusive(self) -> bool:
        return self.lease_until is not None and election_clock() < self.lease_until

    def renew(self) -> None:
        self.lease_until = election_clock() + self.config.lease_duration
        self._renewed.set()

    async def lease_changed(self) -> None:
        await self._renewed.wait()
        self._renewed.clear()


class _Election:
    def __init__(self, config: ElectionConfig) -> None:
        self.config = config
        self.step_downs = 0

    def step_down(self) -> None:
        self.step_downs += 1


def test_a_command_the_watchdog_stopped_at_a_lapsed_lease_starts_again_without_a_step_down(
    tmp_path: Path,
) -> None:
    # Lost answers let a lease run out while the node goes on leading: the watchdog stops
    # the command, as it must, but that is no failure of the command to step down for.
    # The default timings: a lease of 0.94 s, time enough for the command to start in.
    config = ElectionConfig()
    starts = tmp_path / "starts"
    # It exits cleanly when told to stop, as a well-behaved command does.
    script = (
        "import signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        f"open({str(starts)!r}, 'a').write('x')\n"
        "while True:\n"
        "    signal.pause()\n"
    )

    def started() -> int:
        return len(starts.read_text()) if starts.exists() else 0

    async def main() -> None:
        election = _Election(config)
        leadership = _LapsingLease(config)
        command = LeaderCommand([PY, "-c", script], node_id="a", grace=5.0)
        watchdog = Watchdog()
        await watchdog.start()
        supervisor = CommandSupervisor(election, command, watchdog=watchdog)  # type: ignore[arg-type]
        task = asyncio.create_task(supervisor._lead(leadership))  # type: ignore[arg-type]
        try:
            await wait_until(lambda: started() == 1, what="the command to start")
            first = command.pid
            assert first is not None
            # No renewal comes: the lease runs out, and the watchdog stops the command.
            await wait_until(lambda: _gone(first), what="the watchdog to stop the command")
            leadership.renew()
            await wait_until(lambda: started() == 2, what="the command to start again")
            assert election.step_downs == 0
            assert supervisor.failures == 0
            # Counted as a lapse of the lease, not as the command's exit.
            counts = supervisor.counts()
            assert (counts.running, counts.starts, counts.lease_lapses, counts.exits) == (
                True,
                2,
                1,
                0,
            )
        finally:
            await _end(task, command, watchdog)

    asyncio.run(main())


class _StallingCommand(LeaderCommand):
    """A command whose node stalls (SIGSTOP, a long pause) the moment it has started it:
    the event loop is blocked until the command is gone, or for ``limit`` seconds."""

    def __init__(self, argv: list[str], limit: float) -> None:
        super().__init__(argv, node_id="a", grace=5.0)
        self.limit = limit
        self.gone_during_stall: bool | None = None

    async def start(self, term: int, *, before_exec: Callable[[], None] | None = None) -> None:
        await super().start(term, before_exec=before_exec)
        pid = self.pid
        assert pid is not None
        # The stall under test: the loop blocks (nothing the node would write after the
        # start goes out) until the command's process ends, or for ``limit`` seconds.
        pidfd = os.pidfd_open(pid)
        try:
            select.select([pidfd], [], [], self.limit)
        finally:
            os.close(pidfd)
        self.gone_during_stall = _gone(pid)


def test_a_command_whose_node_stalls_as_it_starts_is_still_killed_at_the_lease_end() -> None:
    # The watchdog has the command's deadlines from the command's own process, before
    # its program runs; had the node to send them after the start, a node stopped in
    # between would leave the command running with no deadline at all.
    config = ElectionConfig(election_timeout=0.3, election_timeout_max=0.6, heartbeat_interval=0.05)

    async def main() -> None:
        leadership = _LapsingLease(config)
        lease_end = leadership.lease_until
        assert lease_end is not None
        command = _StallingCommand([PY, "-c", STUBBORN], limit=config.lease_duration + DEADLINE)
        watchdog = Watchdog()
        await watchdog.start()
        supervisor = CommandSupervisor(_Election(config), command, watchdog=watchdog)  # type: ignore[arg-type]
        task = asyncio.create_task(supervisor._lead(leadership))  # type: ignore[arg-type]
        try:
            await wait_until(lambda: command.gone_during_stall is not None, what="the stall")
            assert command.gone_during_stall, "the command outlived its lease in the stall"
            # It ignores SIGTERM: the SIGKILL at the lease's end, not before, ended it.
            assert election_clock() >= lease_end
        finally:
            await _end(task, command, watchdog)

    asyncio.run(main())


def test_an_announced_command_is_killed_at_its_first_deadline_with_no_word_from_the_node() -> None:
    async def main() -> None:
        watchdog = Watchdog()
        await watchdog.start()
        command = LeaderCommand([PY, "-c", STUBBORN], node_id="a", grace=5.0)
        try:
            now = election_clock()
            await command.start(1, before_exec=watchdog.announcement(now + 0.05, now + 0.2))
            pid = command.pid
            assert pid is not None
            await wait_until(lambda: _gone(pid), what="the SIGKILL at the first deadline")
            assert election_clock() >= now + 0.2
        finally:
            await command.stop(0.0)
            await watchdog.close()

    asyncio.run(main())


def test_a_sigterm_that_finds_the_command_before_its_program_runs_stays_with_the_command() -> None:
    # The watchdog knows of the command from its pre-exec hook, so its SIGTERM can come
    # while the command's process is still a copy of the node, with the node's handlers
    # and their wake-up pipe: the node must not take that SIGTERM as its own.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        node_signalled = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, node_signalled.set)
        watchdog = Watchdog()
        await watchdog.start()
        command = LeaderCommand([PY, "-c", STUBBORN], node_id="a", grace=5.0)
        try:
            now = election_clock()
            # SIGTERM is due at once, and SIGKILL a while later.
            announce = watchdog.announcement(now - 1.0, now + 2.0)

            def announce_then_wait() -> None:
                announce()
                # Wait, still the node's copy, for the watchdog's SIGTERM.
                signal.pause()

            await command.start(1, before_exec=announce_then_wait)
            code = await asyncio.wait_for(command.wait(), DEADLINE)
            # Signals reach the loop's handlers in the order they came: once one sent now
            # has been handled, a SIGTERM the copy passed on would have been too.
            barrier = asyncio.Event()
            loop.add_signal_handler(signal.SIGUSR1, barrier.set)
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(barrier.wait(), DEADLINE)
            assert not node_signalled.is_set(), "the command's SIGTERM reached the node"
            # And it ended the command's process, as it would the command's program.
            assert code == -signal.SIGTERM
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGUSR1)
            await command.stop(0.0)
            await watchdog.close()

    asyncio.run(main())


def test_a_command_that_exits_by_itself_is_counted_as_an_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_supervisor, "RESTART_BACKOFF", (0.001, 0.004))

    async def main() -> None:
        config = ElectionConfig()
        command = LeaderCommand(["true"], node_id="a")
        supervisor = CommandSupervisor(_Election(config), command, on_exit="restart")  # type: ignore[arg-type]
        task = asyncio.create_task(supervisor._lead(_LapsingLease(config)))  # type: ignore[arg-type]
        try:
            await wait_until(lambda: supervisor.exits >= 2, what="two exits")
            counts = supervisor.counts()
            assert counts.lease_lapses == 0
            assert counts.starts >= counts.exits >= 2
        finally:
            await _end(task, command)

    asyncio.run(main())

"""A watchdog process that stops the leader command when the lease runs out.

The node's event loop can stall (a GC pause, CPU starvation, SIGSTOP) or be cut off from
the others while its command runs on; nothing inside the node can then stop the command
in time. This small separate process can: the node keeps renewing two deadlines on it
over a pipe, and if they pass unrenewed the watchdog sends SIGTERM to the command's
whole process group at the first and SIGKILL at the second, the end of the lease. It
runs in a session of its own, so job control that stops the node's group does not stop
it, and it kills the command at once if the node dies (its pipe closes).

Deadlines are absolute CLOCK_BOOTTIME readings (monotonic where there is none), which
every process on the machine shares. The protocol is one line per command::

    group PGID TERM KILL    watch this process group (the command's), with deadlines
    renew TERM KILL         SIGTERM at TERM, SIGKILL at KILL (seconds, election clock)
    release                 the command is gone: watch nothing
    (end of input)          the node died: SIGKILL the group now, and exit

and the watchdog answers ``ready`` once, when it runs. A group never goes unwatched for a
moment: its first deadlines come with it, and the command's own process writes that line
(:meth:`Watchdog.announcement`, a pre-exec hook) before it runs the command's program.
Were the node to write it after the start, a node stopped in between (SIGSTOP, a stall)
would leave a command running with no deadline at all. This file is also the watchdog's
program: it is run by path, so it imports nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable

__all__ = ["Watchdog", "WatchdogUnavailable"]

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)

#: How long the node waits for the watchdog to say it runs.
START_TIMEOUT = 5.0

#: This file, which is also the watchdog's program.
_PROGRAM = os.path.abspath(__file__)


def _clock() -> float:
    # The same clock as almost_raft.election_clock, which this file cannot import.
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


class WatchdogUnavailable(Exception):
    """The watchdog process could not be started; the message says why."""


class Watchdog:
    """The node's handle on its watchdog process."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The watchdog's process id, while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Start the watchdog and wait until it says it runs.

        Raises:
            WatchdogUnavailable: it could not be started, or did not answer in time.
        """
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                _PROGRAM,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise WatchdogUnavailable(f"cannot start {sys.executable}: {exc}") from exc
        self._process = process
        assert process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await process.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self.close()
            raise WatchdogUnavailable(
                f"the watchdog process did not start within {START_TIMEOUT:.0f}s"
            )

    def watch(self, pgid: int, term_at: float, kill_at: float) -> None:
        """Watch the process group ``pgid`` from now on: SIGTERM it at ``term_at`` and
        SIGKILL it at ``kill_at`` unless renewed."""
        self._write(_group_line(pgid, term_at, kill_at))

    def announcement(self, term_at: float, kill_at: float) -> Callable[[], None]:
        """A pre-exec hook that has the watchdog watch the child it runs in.

        The child (between fork and exec, so before the command's program runs) writes
        the ``group`` line for its own process group, with these deadlines, straight into
        the watchdog's pipe: one write of a few bytes, which a pipe never interleaves
        with the node's. The node must call :meth:`release` if the start then fails.

        Raises:
            WatchdogUnavailable: the watchdog is not running, or its pipe holds a
                partial line of the node's (it has stopped reading), after which the
                child's line could not be told apart.
        """
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise WatchdogUnavailable("the watchdog process is not running")
        transport = process.stdin.transport
        if transport.get_write_buffer_size():
            raise WatchdogUnavailable("the watchdog process is not reading its pipe")
        pipe = transport.get_extra_info("pipe")
        fd = pipe.fileno()

        def announce() -> None:
            # Until it execs, this process is a copy of the node: were a signal of the
            # watchdog's to find the node's handlers here, they would pass it on to the
            # node through their wake-up pipe, which the copy shares. Let it be what the
            # command's program will see. (The signal functions refuse any thread but the
            # main one, whose handlers these would be.)
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
            line = _group_line(os.getpgid(0), term_at, kill_at).encode()
            try:
                written = os.write(fd, line)
            except OSError:
                written = 0
            if written != len(line):
                # Unwatched, the command must not run at all.
                os._exit(1)

        return announce

    def renew(self, term_at: float, kill_at: float) -> None:
        """SIGTERM the group at ``term_at`` and SIGKILL it at ``kill_at`` unless renewed."""
        self._write(f"renew {term_at!r} {kill_at!r}\n")

    def release(self) -> None:
        """The group is gone: watch nothing."""
        self._write("release\n")

    def _write(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise WatchdogUnavailable("the watchdog process is not running")
        # A pipe write of a few bytes never blocks; the transport buffers it if it would.
        process.stdin.write(line.encode())

    async def close(self) -> None:
        """Stop the watchdog (after releasing what it watches)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.write(b"release\n")
                process.stdin.close()
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _group_line(pgid: int, term_at: float, kill_at: float) -> str:
    return f"group {pgid} {term_at!r} {kill_at!r}\n"


# ----------------------------------------------------------------------- the watchdog


def _signal(pgid: int | None, signum: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def main() -> None:
    """The watchdog's loop: read renewals, signal the group when they lapse."""
    # The node stops the watchdog through its pipe; a terminal's Ctrl-C is not for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = sys.stdin.fileno()
    os.write(sys.stdout.fileno(), b"ready\n")
    pgid: int | None = None
    term_at = kill_at = float("inf")
    termed = False
    pending = b""
    while True:
        now = _clock()
        if pgid is not None and now >= kill_at:
            _signal(pgid, signal.SIGKILL)
            pgid, term_at, kill_at = None, float("inf"), float("inf")
        elif pgid is not None and now >= term_at and not termed:
            _signal(pgid, signal.SIGTERM)
            termed = True
        wake = min(kill_at if termed else term_at, kill_at)
        timeout = None if pgid is None or wake == float("inf") else max(0.0, wake - now)
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            # The node is gone, and no one renews the lease now.
            _signal(pgid, signal.SIGKILL)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            words = line.split()
            try:
                if words[:1] == [b"group"] and len(words) == 4:
                    group, term, kill = int(words[1]), float(words[2]), float(words[3])
                    pgid, term_at, kill_at, termed = group, term, kill, False
                elif words[:1] == [b"renew"] and len(words) == 3:
                    term_at, kill_at = float(words[1]), float(words[2])
                    # One SIGTERM per stop: a renewal that is already due sends none.
                    termed = termed and _clock() >= term_at
                elif words[:1] == [b"release"]:
                    pgid, term_at, kill_at, termed = None, float("inf"), float("inf"), False
            except ValueError:
                # Only the node writes here; a line it did not mean is dropped.
                continue


if __name__ == "__main__":
    main()

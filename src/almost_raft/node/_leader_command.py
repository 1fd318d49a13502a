"""Run a command only while this node is leader, as ``consul lock`` does.

The command starts when leadership is won (by default only once the node holds a lease,
see :mod:`._supervisor`), with the term (the fencing token) in its environment, and is
stopped when leadership is lost: SIGTERM to its whole process group, then SIGKILL after
a grace period, or at the end of the lease, whichever comes first. It runs in a session
of its own, so a shell command's children are stopped with it. On Linux the command is
also killed if the node's process dies without stopping it (SIGKILL, a crash), so it
cannot outlive the leadership it was started for; its own children are not covered by
that (the watchdog's signals to the group are), which is one reason to pass the term on
as a fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence

from ._parent_death import signal_on_parent_death

__all__ = ["LeaderCommand"]

logger = logging.getLogger("almost_raft.command")


class LeaderCommand:
    """One command, started and stopped as leadership comes and goes.

    Args:
        argv: the program and its arguments.
        node_id: this node's id, passed as ``ALMOST_RAFT_NODE_ID``.
        grace: seconds between SIGTERM and SIGKILL when stopping.
        env: the base environment (default: this process's).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        node_id: str,
        grace: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("a leader command needs at least a program name")
        self.argv = list(argv)
        self.node_id = node_id
        self.grace = grace
        self._env = dict(os.environ if env is None else env)
        self._process: asyncio.subprocess.Process | None = None
        self.term: int | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        """Whether the command was started and has not exited yet."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The running command's process id, if it is running."""
        return self._process.pid if self.running and self._process is not None else None

    async def start(self, term: int, *, before_exec: Callable[[], None] | None = None) -> None:
        """Start the command for leadership of ``term``.

        ``before_exec``, if given, runs in the command's process after its session is
        made and before its program runs (a watchdog's announcement).

        Raises:
            OSError: the program could not be started (not found, not executable).
        """
        if self.running:
            raise RuntimeError("the leader command is already running")
        env = dict(self._env)
        env.update(
            ALMOST_RAFT_TERM=str(term),
            ALMOST_RAFT_NODE_ID=self.node_id,
            ALMOST_RAFT_LEADER=self.node_id,
        )
        hooks = [
            hook
            for hook in (signal_on_parent_death(signal.SIGKILL), before_exec)
            if hook is not None
        ]

        def before_program() -> None:
            for hook in hooks:
                hook()

        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=env,
            start_new_session=True,
            preexec_fn=before_program if hooks else None,
        )
        self.term = term
        self.starts += 1
        logger.info("started %s (pid %d) for term %d", self.argv[0], self._process.pid, term)

    async def wait(self) -> int:
        """Wait until the command exits by itself; return its exit status."""
        if self._process is None:
            raise RuntimeError("the leader command was never started")
        return await self._process.wait()

    async def stop(self, grace: float | None = None) -> int | None:
        """Stop the command: SIGTERM, then SIGKILL after ``grace`` (default: ``self.grace``).

        Returns the exit status, or ``None`` if it was not running. Safe to call when the
        command already exited. Finishes the stop even if the caller is cancelled.
        """
        process = self._process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        stopping = asyncio.ensure_future(
            self._terminate(process, self.grace if grace is None else max(0.0, grace))
        )
        try:
            return await asyncio.shield(stopping)
        except asyncio.CancelledError:
            # The caller gave up waiting, but the command must not outlive leadership.
            await stopping
            raise

    async def _terminate(self, process: asyncio.subprocess.Process, grace: float) -> int:
        logger.info("stopping pid %d (term %s) with SIGTERM", process.pid, self.term)
        _signal_group(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                return await process.wait()
        except TimeoutError:
            logger.warning("pid %d ignored SIGTERM for %.3fs; sending SIGKILL", process.pid, grace)
            _signal_group(process.pid, signal.SIGKILL)
            return await process.wait()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # The command leads its own session, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)

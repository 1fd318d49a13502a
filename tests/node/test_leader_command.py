"""The leader command: started with the fencing token, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from almost_raft.node._leader_command import LeaderCommand
from helpers.cluster import wait_until

PY = sys.executable


# A command that waits to be signalled, however long the test takes.
WAIT = "import signal; signal.pause()"


async def _wait_for_file(path: Path) -> str:
    await wait_until(
        lambda: path.exists() and path.read_text().endswith("\n"), what=f"a line in {path.name}"
    )
    return path.read_text()


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or _proc_state(pid) == "Z"


def test_command_gets_term_and_ids_and_stops_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    script = (
        "import os, signal\n"
        f"open({str(out)!r}, 'w').write(' '.join(os.environ[k] for k in "
        "('ALMOST_RAFT_TERM', 'ALMOST_RAFT_NODE_ID', 'ALMOST_RAFT_LEADER')) + '\\n')\n"
        "signal.pause()\n"
    )

    async def main() -> None:
        command = LeaderCommand([PY, "-c", script], node_id="a", grace=5.0)
        await command.start(7)
        assert await _wait_for_file(out) == "7 a a\n"
        assert command.running
        status = await command.stop()
        assert status == -15
        assert not command.running

    asyncio.run(main())


def test_command_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').write('ok\\n')\n"
        "signal.pause()\n"
    )

    async def main() -> None:
        command = LeaderCommand([PY, "-c", script], node_id="a", grace=0.3)
        await command.start(1)
        await _wait_for_file(ready)
        assert await command.stop() == -9

    asyncio.run(main())


def test_children_of_the_command_are_stopped_too(tmp_path: Path) -> None:
    child_pid = tmp_path / "child"
    script = (
        "import signal, subprocess\n"
        f"p = subprocess.Popen([{PY!r}, '-c', {WAIT!r}])\n"
        f"open({str(child_pid)!r}, 'w').write(str(p.pid) + '\\n')\n"
        "signal.pause()\n"
    )

    async def main() -> int:
        command = LeaderCommand([PY, "-c", script], node_id="a", grace=5.0)
        await command.start(1)
        pid = int(await _wait_for_file(child_pid))
        await command.stop()
        return pid

    pid = asyncio.run(main())

    asyncio.run(wait_until(lambda: _gone(pid), what="the command's child to be gone"))


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_exit_is_reported_and_stop_after_exit_is_safe() -> None:
    async def main() -> None:
        command = LeaderCommand([PY, "-c", "raise SystemExit(3)"], node_id="a")
        await command.start(2)
        assert await command.wait() == 3
        assert await command.stop() == 3
        assert command.starts == 1

    asyncio.run(main())


def test_command_dies_with_the_node_process(tmp_path: Path) -> None:
    # A node process that starts a command and is then SIGKILLed must not leave it behind.
    pid_file = tmp_path / "command.pid"
    node_script = (
        "import asyncio, os, signal\n"
        "from almost_raft.node._leader_command import LeaderCommand\n"
        "async def main():\n"
        f"    c = LeaderCommand([{PY!r}, '-c', {WAIT!r}], node_id='a')\n"
        "    await c.start(1)\n"
        f"    open({str(pid_file)!r}, 'w').write(str(c.pid) + '\\n')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )

    async def main() -> int:
        node = await asyncio.create_subprocess_exec(PY, "-c", node_script)
        assert await node.wait() == -9
        return int(await _wait_for_file(pid_file))

    command_pid = asyncio.run(main())

    asyncio.run(wait_until(lambda: _gone(command_pid), what="the command to die with the node"))

"""``almost-raft members`` moves past a node that cannot answer, and says why.

A stopped process (SIGSTOP, a hung host) still completes the TCP handshake in its kernel,
so a dial succeeds and nothing ever comes back: here that is a listening socket nobody
accepts on. A node that is down refuses the dial.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from almost_raft.cli import _members
from almost_raft.cli._main import main

CLUSTER = """\
cluster = "jobs"
state_dir = "state"

[nodes.frozen]
address = "127.0.0.1:{a}"
admin = "127.0.0.1:{frozen_admin}"

[nodes.down]
address = "127.0.0.1:{b}"
admin = "127.0.0.1:{down_admin}"
"""


@pytest.fixture
def frozen_listener() -> Iterator[socket.socket]:
    """A socket whose kernel completes every handshake and whose owner never reads."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_frozen_node_costs_the_greeting_limit_not_the_whole_timeout(
    tmp_path: Path,
    frozen_listener: socket.socket,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_members, "GREETING_TIMEOUT", 0.3)
    path = tmp_path / "cluster.toml"
    path.write_text(
        CLUSTER.format(
            a=free_port(),
            frozen_admin=frozen_listener.getsockname()[1],
            b=free_port(),
            down_admin=free_port(),
        )
    )
    started = time.monotonic()
    code = main(["members", "--config", str(path), "--timeout", "40"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    assert elapsed < 10, elapsed
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "frozen: 127.0.0.1:" in lines[0]
    assert "did not greet within 0.3 s" in lines[0]
    assert "down: 127.0.0.1:" in lines[0]
    assert "refused the connection" in lines[0]


def test_a_pending_change_says_what_it_waits_for_and_shows_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = (
        "d was added as a non-voter (configuration v4 committed); it will be promoted once "
        "it has saved the configuration and answers"
    )

    async def pending(*args: object) -> dict[str, object]:
        return {
            "ok": False,
            "pending": True,
            "error": waiting,
            "leader": "frozen",
            "configuration": {
                "version": 4,
                "term": 2,
                "members": [
                    {"id": "frozen", "voter": True, "address": None},
                    {"id": "d", "voter": False, "address": "10.0.0.4:7004"},
                ],
            },
        }

    monkeypatch.setattr(_members, "_ask_cluster", pending)
    path = tmp_path / "cluster.toml"
    path.write_text(
        CLUSTER.format(
            a=free_port(), frozen_admin=free_port(), b=free_port(), down_admin=free_port()
        )
    )
    code = main(["members", "--config", str(path), "add", "d", "10.0.0.4:7004"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.strip() == f"almost-raft members: {waiting}"
    assert "promoted" not in captured.out
    assert "configuration v4 (made in term 2), leader frozen" in captured.out
    assert any(line.split()[:2] == ["d", "non-voter"] for line in captured.out.splitlines())

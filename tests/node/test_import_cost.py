"""What an ``almost-raft run`` process imports: nothing it only needs on demand."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from almost_raft.cli._parser import _HelpFormatter, _terminal_columns

# Builds the parser and imports what a node imports before it starts, then prints which
# of the modules a node should not carry from the start are loaded.
_PROBE = """
import sys
from almost_raft.cli._main import _parse
_parse(["run", "--config", "c.toml", "--id", "a"])
import almost_raft.node._run, almost_raft.node._log_format
print(",".join(m for m in sys.argv[1:] if m in sys.modules))
"""

# Runs a node (argv: the cluster file, its HTTP port and the paths to ask for, then the
# modules to look for) until it has answered GET for each path in turn, then prints which
# of those modules it loaded and stops it as SIGTERM would. The waiting is done with bare
# sockets and bytes, so that the probe itself loads nothing a node might not.
_RUNNING_PROBE = """
import os, signal, sys, threading, time
from almost_raft.cli._main import main

config, port, paths, wanted = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]

def answered(path):
    import socket
    with socket.socket() as sock:
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET " + path.encode() + b" HTTP/1.0\\r\\n\\r\\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

def report_and_stop():
    end = time.monotonic() + 60
    for path in paths.split(","):
        while not answered(path):
            if time.monotonic() > end:
                print("no answer to " + path, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)
    print("loaded:" + ",".join(m for m in wanted if m in sys.modules), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report_and_stop, daemon=True).start()
sys.exit(main(["run", "--config", config, "--id", "a", "--http", f"127.0.0.1:{port}"]))
"""

# What a node must not carry, and why each was kept out:
_KEPT_OUT = (
    # Read once, then let go: the command line's parser.
    "argparse",
    "gettext",
    "almost_raft.cli._parser",
    # Only when used: the leader command's parent-death signal (ctypes), argparse's own
    # terminal-width lookup (shutil, which brings bz2 and lzma), the shared secret (hashlib).
    "ctypes",
    "shutil",
    "hashlib",
    # /metrics is written by the node itself: prometheus-client's exposition module
    # imports urllib.request, http.server and wsgiref (4.2-4.6 MiB resident).
    "prometheus_client",
    "urllib.request",
    "http.server",
    "wsgiref",
    # The state is loaded and saved in a thread of its own, not in asyncio's executor.
    "concurrent.futures.thread",
    "queue",
    # Read once, then let go: the cluster file's TOML reader.
    "tomllib",
    "tomllib._parser",
    # Paths are strings: pathlib with urllib.parse and ipaddress is 0.6 MiB.
    "pathlib",
    "urllib.parse",
    "ipaddress",
    # The state file's checksum is binascii.crc32, which ssl has loaded already.
    "zlib",
    # An address is bound and checked without getaddrinfo(), which would load the IDNA
    # codec for good (0.5 MiB).
    "encodings.idna",
    "stringprep",
    "unicodedata",
    # The package root imports the seed's API and the in-memory network on demand.
    "almost_raft.seed",
    "almost_raft.transport._memory",
    "almost_raft.transport._faults",
    # Membership changes from the command line, and the admin endpoint they talk to.
    "almost_raft.cli._members",
    "almost_raft.node._admin",
    # The other commands, and the test tools.
    "almost_raft.cli._status",
    "almost_raft.cli._certs",
    "almost_raft.cli.demo",
    "almost_raft.sim",
    "almost_raft.chaos",
    # Only when closing: waiting for the last frames to leave.
    "almost_raft.transport.tcp._flush",
    # Only a node that runs a leader command.
    "almost_raft.node._leader_command",
    "almost_raft.node._supervisor",
    "almost_raft.node._watchdog",
)

#: Only a node that serves /status and /metrics.
_HTTP = ("almost_raft.node._http",)


def test_a_node_without_command_secret_or_scrape_imports_none_of_their_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *_KEPT_OUT, *_HTTP],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == ""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("paths", ["/status", "/status,/metrics"])
def test_a_running_node_that_serves_status_loads_none_of_them(tmp_path: Path, paths: str) -> None:
    # Its peers never start: the node listens, campaigns and answers /status alone; a
    # scrape of /metrics loads nothing more either.
    a, http, b, c = _free_ports(4)
    config = tmp_path / "cluster.toml"
    config.write_text(
        f'cluster = "imports"\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[nodes.a]\naddress = "127.0.0.1:{a}"\n\n'
        f'[nodes.b]\naddress = "127.0.0.1:{b}"\n\n'
        f'[nodes.c]\naddress = "127.0.0.1:{c}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-c", _RUNNING_PROBE, str(config), str(http), paths, *_KEPT_OUT, *_HTTP],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "loaded:" in result.stdout, result.stdout + result.stderr
    # The HTTP module it serves with shows that the probe sees what a node loaded.
    assert result.stdout.split("loaded:", 1)[1].strip() == ",".join(_HTTP)


def test_the_help_width_follows_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "61")
    assert _terminal_columns() == 61
    # argparse keeps two columns of margin.
    assert _HelpFormatter("prog")._width == 59


def test_the_help_width_falls_back_to_80_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "not a number")
    monkeypatch.setattr(sys, "__stdout__", None)
    assert _terminal_columns() == 80

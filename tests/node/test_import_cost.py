"""What an ``almost-raft run`` process imports: nothing it only needs on demand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from almost_raft.cli._main import _HelpFormatter, _terminal_columns

# Builds the parser and imports what a node imports before it starts, then prints which
# of the modules a node should not carry from the start are loaded.
_PROBE = """
import sys
from almost_raft.cli._main import _parser
_parser().parse_args(["run", "--config", "c.toml", "--id", "a"])
import almost_raft.node._run, almost_raft.node._log_format
print(",".join(m for m in sys.argv[1:] if m in sys.modules))
"""

# What a node must not carry, and why each was kept out:
_KEPT_OUT = (
    # Only when used: the leader command's parent-death signal (ctypes), argparse's own
    # terminal-width lookup (shutil, which brings bz2 and lzma), the shared secret (hashlib).
    "ctypes",
    "shutil",
    "hashlib",
    # The first scrape of /metrics imports it.
    "prometheus_client",
    # Paths are strings: pathlib with urllib.parse and ipaddress is 0.6 MiB.
    "pathlib",
    "urllib.parse",
    "ipaddress",
    # The state file's checksum is binascii.crc32, which ssl has loaded already.
    "zlib",
    # Only a node that runs a leader command, or serves /status and /metrics.
    "almost_raft.node._leader_command",
    "almost_raft.node._http",
)


def test_a_node_without_command_secret_or_scrape_imports_none_of_their_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *_KEPT_OUT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == ""


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

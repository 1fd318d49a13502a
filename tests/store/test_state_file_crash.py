"""SIGKILL a real node again and again while it changes terms: its state file survives.

The node runs alone in a two-node cluster whose other member never starts, with PreVote
off, so it starts a real election (a new term, saved to disk) every 30-60 ms. Each round
starts the process, waits until it has saved a term above the last one seen, lets it
campaign a random moment longer and kills it with SIGKILL. After every kill the state file,
opened the way the next start opens it (``FileStore.load``), must hold a term at least as
high as the last one the running node had saved (never rolled back), with both slots intact:
a save overwrites one page-sized slot with a single write, which a killed process cannot
tear, so a damaged slot (only a power loss may leave one) fails the test too.

The suite runs 60 rounds; ``ALMOST_RAFT_CRASH_ROUNDS=200`` runs the longer version.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from almost_raft import FileStore, StateFileError
from almost_raft.store._store import decode_state

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("ALMOST_RAFT_CRASH_ROUNDS", "60"))
DEADLINE = 20.0
# The longest extra moment a round lets the node campaign before the kill: about one
# election, so kills land everywhere in the cycle, mid-save included.
MAX_EXTRA_SECONDS = 0.06
NODE_COMMAND = (sys.executable, "-m", "almost_raft", "run")


@dataclasses.dataclass
class CrashLog:
    """What the rounds saw, for the assertions and the failure messages."""

    terms_after_kill: list[int] = dataclasses.field(default_factory=list)
    terms_seen_running: list[int] = dataclasses.field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_cluster_file(directory: Path) -> Path:
    # n2 never runs: nothing listens on its port, so n1 can never win an election.
    path = directory / "cluster.toml"
    path.write_text(
        'cluster = "crash"\n'
        'state_dir = "state"\n'
        "\n"
        "[election]\n"
        "election_timeout_ms = 30\n"
        "election_timeout_max_ms = 60\n"
        "heartbeat_interval_ms = 10\n"
        "message_timeout_ms = 20\n"
        "pre_vote = false\n"
        "\n"
        "[nodes.n1]\n"
        f'address = "127.0.0.1:{free_port()}"\n'
        "\n"
        "[nodes.n2]\n"
        f'address = "127.0.0.1:{free_port()}"\n',
        encoding="utf-8",
    )
    return path


def read_term(state_path: Path) -> int | None:
    """The newest term in a running node's state file, ``None`` if there is none yet.

    The node holds the file's lock, so this decodes the bytes as ``FileStore.load`` does,
    without the lock. A read can meet a slot in the middle of its overwrite; the decoding
    then takes the other slot, the newest whole state. Fails if neither slot is whole.
    """
    try:
        raw = state_path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return decode_state(raw, str(state_path)).term
    except StateFileError as exc:
        pytest.fail(f"the state file is damaged: {exc}; bytes: {raw!r}")


def tail(log_path: Path, lines: int = 8) -> str:
    return "\n".join(log_path.read_text("utf-8", "replace").splitlines()[-lines:])


def start_node(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*NODE_COMMAND, "--config", str(config), "--id", "n1", "--log-format", "json"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            process_group=0,
        )


def wait_for_term_above(
    process: subprocess.Popen[bytes], state_path: Path, log_path: Path, floor: int
) -> int:
    """Poll until the running node has saved a term above ``floor``; return that term."""
    end = time.monotonic() + DEADLINE
    while True:
        term = read_term(state_path)
        if term is not None and term > floor:
            return term
        if process.poll() is not None:
            pytest.fail(
                f"the node exited with {process.returncode} instead of campaigning "
                f"above term {floor}:\n{tail(log_path)}"
            )
        if time.monotonic() > end:
            pytest.fail(f"no term above {floor} within {DEADLINE}s:\n{tail(log_path)}")
        time.sleep(0.002)


def load_term_after_kill(state_path: Path, caplog: pytest.LogCaptureFixture) -> int:
    """The term the next start would load; fails on a damaged file or slot."""
    caplog.clear()
    store = FileStore(state_path)
    try:
        with caplog.at_level(logging.WARNING, logger="almost_raft.store"):
            state = store.load()
    except StateFileError as exc:
        pytest.fail(f"the state file is damaged: {exc}; bytes: {state_path.read_bytes()!r}")
    finally:
        store.close()
    assert state is not None, "the state file disappeared"
    damaged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert damaged == [], "a kill left a damaged slot"
    return state.term


def crash_rounds(
    directory: Path, rounds: int, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> CrashLog:
    config = write_cluster_file(directory)
    state_path = directory / "state" / "n1.state"
    log_path = directory / "n1.log"
    seen = CrashLog()
    last = 0
    for round_number in range(rounds):
        process = start_node(config, log_path)
        try:
            running_term = wait_for_term_above(process, state_path, log_path, last)
            seen.terms_seen_running.append(running_term)
            time.sleep(rng.uniform(0.0, MAX_EXTRA_SECONDS))
            process.send_signal(signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        after = load_term_after_kill(state_path, caplog)
        assert after >= running_term, (
            f"round {round_number}: term {after} on disk after the kill, "
            f"but the running node had saved {running_term}"
        )
        seen.terms_after_kill.append(after)
        last = after
    return seen


def test_sigkill_while_changing_terms_never_damages_or_rolls_back_the_state_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = crash_rounds(tmp_path, ROUNDS, random.Random(7), caplog)
    assert len(seen.terms_after_kill) == ROUNDS
    # Never lower across a kill and the restart that loaded it.
    assert seen.terms_after_kill == sorted(seen.terms_after_kill)
    # Each restarted node went on from the term it loaded: its first save was above it.
    for before, running in zip(seen.terms_after_kill, seen.terms_seen_running[1:], strict=False):
        assert running > before
    # The node really was changing terms: at least one election per round.
    assert seen.terms_after_kill[-1] >= ROUNDS

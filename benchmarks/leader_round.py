"""What one heartbeat round costs a leader's core, with warm caches and with cold ones.

    .venv/bin/python benchmarks/leader_round.py              # about 20 s
    .venv/bin/python benchmarks/leader_round.py --parts      # and where a cold round goes

A leader of five (:class:`ElectionCore`, no runtime, no sockets) runs rounds as a node
does: the heartbeat tick, the heartbeat's frame encoded once, then four answers decoded
from their frames and received. Each round is timed twice over:

- *warm*: rounds back to back, so the code and data of one round are in the CPU's
  caches for the next; this is what a profiler's "per call" figures resemble;
- *cold*: before the tick and again before the answers, 32 MiB are written and a system
  call made, which leaves little of the round in the caches. In a node 50 ms apart from
  the last round, with other processes run in between, a round is nearer this case.

The cold figure is several times the warm one: a round's cost is mostly what it touches
(code objects, frames, the objects it reads), not how many operations it runs, so a change
that removes calls but not the modules and objects they touch saves little. ``--parts``
times the core's steps of a cold round separately (each wrapped in a timer, which adds a
little to its parents).

Prints a table and writes ``benchmarks/results/leader_round.json``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import machine, table, write_json

from almost_raft import ElectionConfig
from almost_raft.core._messages import HeartBeat, HeartBeatResponse, RequestVoteResponse
from almost_raft.core._state import NodeState
from almost_raft.core._state_machine import ElectionCore
from almost_raft.transport.tcp._wire import HEADER_BYTES, decode_message, encode_message

PEERS = ("n2", "n3", "n4", "n5")
CONFIG = ElectionConfig(election_timeout=0.5, election_timeout_max=1.0, heartbeat_interval=0.05)
_EVICTED = bytearray(32 << 20)
_LINE = 64

#: The core's steps that --parts times: (object to patch, method name, label).
_PARTS = (
    ("core", "_broadcast_heartbeat", "heartbeat broadcast (tick)"),
    ("keeper", "send_round", "  lease: the round's send"),
    ("core", "_round_trip_us", "  round trip to advertise"),
    ("batch", "send", "  batch: a message added"),
    ("core", "_finish", "batch closed (every input)"),
    ("core", "_refresh_lease", "  lease computed"),
    ("core", "_on_answer", "answer handled"),
    ("keeper", "answered", "  lease: an answer noted"),
    ("round_trips", "heartbeat_answered", "  round trip sampled"),
    ("core", "_on_configuration_ack", "  configuration acknowledged"),
)


def leader() -> ElectionCore:
    """A core that has won the election of term 1 or 2 among ``PEERS``."""
    core = ElectionCore("n1", PEERS, CONFIG, random.Random(1), 0.0, None)
    now = core.next_deadline
    core.tick(now)
    if core.role is NodeState.PRE_CANDIDATE:
        for peer in PEERS:
            core.receive(RequestVoteResponse(core.term + 1, peer, True, pre_vote=True), now)
    for peer in PEERS:
        core.receive(RequestVoteResponse(core.term, peer, True), now)
    assert core.role is NodeState.LEADER, core.role
    return core


def evict() -> None:
    """Write a line of every 64 bytes of 32 MiB and make a system call."""
    _EVICTED[::_LINE] = bytes(len(_EVICTED) // _LINE)
    time.sleep(0)


def run_rounds(core: ElectionCore, rounds: int, cold: bool) -> tuple[list[float], list[float]]:
    """Microseconds of each round's tick (with its encoding) and of its four answers."""
    ticks: list[float] = []
    answers: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        if cold:
            evict()
        now = core.next_deadline
        started = clock()
        output = core.tick(now)
        heartbeat = output.messages[0].message if output.messages else None
        if heartbeat is not None:
            encode_message(heartbeat)
        ticked = clock()
        if not isinstance(heartbeat, HeartBeat):
            continue  # a CheckQuorum tick: no round
        term, version = core.configuration.key
        frames = [
            encode_message(HeartBeatResponse(core.term, peer, term, version, heartbeat.round))[
                HEADER_BYTES:
            ]
            for peer in PEERS
        ]
        if cold:
            evict()
        answered = clock()
        for frame in frames:
            core.receive(decode_message(frame), now + 0.001)
        ticks.append((ticked - started) / 1e3)
        answers.append((clock() - answered) / 1e3)
        assert core.role is NodeState.LEADER
    return ticks, answers


def time_parts(core: ElectionCore, rounds: int) -> dict[str, float]:
    """Microseconds per round in each of ``_PARTS`` over ``rounds`` cold rounds."""
    spent: collections.Counter[str] = collections.Counter()
    owners: dict[str, Any] = {
        "core": type(core),
        "keeper": type(core._lease_keeper),
        "batch": type(core._batch),
        "round_trips": type(core.round_trips),
    }
    originals: list[tuple[Any, str, Callable[..., Any]]] = []
    for owner, name, label in _PARTS:
        cls = owners[owner]
        original = getattr(cls, name)
        originals.append((cls, name, original))
        setattr(cls, name, _timed(original, label, spent))
    try:
        measured, _ = run_rounds(core, rounds, cold=True)
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)
    return {label: spent[label] / 1e3 / len(measured) for _, _, label in _PARTS}


def _timed(
    method: Callable[..., Any], label: str, spent: collections.Counter[str]
) -> Callable[..., Any]:
    clock = time.perf_counter_ns

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return method(*args, **kwargs)
        finally:
            spent[label] += clock() - started

    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="warm rounds per pass")
    parser.add_argument("--cold-rounds", type=int, default=300, help="cold rounds per pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--parts", action="store_true", help="time the core's steps too")
    args = parser.parse_args()
    core = leader()
    run_rounds(core, 200, cold=False)
    passes: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    for _ in range(args.passes):
        for kind, rounds in (("warm", args.rounds), ("cold", args.cold_rounds)):
            ticks, answers = run_rounds(core, rounds, cold=kind == "cold")
            passes[kind].append(
                {"tick_us": statistics.median(ticks), "answers_us": statistics.median(answers)}
            )
    rows = [
        [
            kind,
            index,
            figures["tick_us"],
            figures["answers_us"],
            figures["tick_us"] + figures["answers_us"],
        ]
        for kind, runs in passes.items()
        for index, figures in enumerate(runs)
    ]
    print("median per round, microseconds")
    header = ["caches", "pass", "tick and encode", "4 answers: decode, receive", "round"]
    print(table(header, [[f"{c:.1f}" if isinstance(c, float) else c for c in r] for r in rows]))
    results: dict[str, Any] = {"machine": machine(), "passes": passes}
    if args.parts:
        parts = time_parts(core, args.cold_rounds)
        print("\ncold round, microseconds per round in each step")
        print(table(["step", "us"], [[label, f"{us:.1f}"] for label, us in parts.items()]))
        results["cold_parts_us"] = parts
    print(f"wrote {write_json('leader_round', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

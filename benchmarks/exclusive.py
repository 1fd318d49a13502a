"""Exclusive leadership on 5 real processes: when the new leader is known, when its work starts.

    .venv/bin/python benchmarks/exclusive.py --trials 30     # a few minutes
    .venv/bin/python benchmarks/exclusive.py --quick         # under a minute

Starts ``almost-raft run`` processes on 127.0.0.1 (election timeout 150-300 ms, heartbeat
50 ms), each with an exclusive leader command that stamps its start on CLOCK_BOOTTIME,
and, trial after trial, signals the leader's node process:

- SIGKILL, a crash: the followers learn of it from refused redials and vote early; the
  winner leads at once but starts its command only once the promises its voters made to
  the dead leader have run out.
- SIGTERM, a hand-over: the leader stops its command, then sends TimeoutNow; its voters
  waive the promise made to it, so the successor's command may start at once.
- SIGSTOP, a silent failure: nothing is said; the followers wait out their election
  timeout, by when the frozen leader's lease has run out (its watchdog killed its command).

Each trial is timed from the signal to the new leader's own log line saying it leads
(*known*) and to its log line saying it holds the lease and starts the command
(*exclusive*: the work may begin), and also from known to exclusive; when the command's
process was forked, and its own first stamp a Python start-up later, are shown too.
Prints a table against the targets and writes ``benchmarks/results/exclusive.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, summarize, table, write_json

from almost_raft.chaos._stamps import STAMPING_COMMAND, lives, overlaps, read_stamps
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

TIMINGS = ClusterTimings(
    election_timeout_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=50
)
DEADLINE = 20.0
# Connections count as healthy (no redial backoff) once up for the transport's backoff
# maximum of 1 s; a crash of a leader elected less than that ago is noticed later.
SETTLE = 1.2
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)

ET = TIMINGS.election_timeout_ms / 1000
HB = TIMINGS.heartbeat_interval_ms / 1000
KINDS: dict[str, tuple[signal.Signals, str]] = {
    "crash (SIGKILL)": (
        signal.SIGKILL,
        f"exclusive < election_timeout + 2 heartbeats ({(ET + 2 * HB) * 1000:.0f} ms) after",
    ),
    "hand-over (SIGTERM)": (signal.SIGTERM, "exclusive < 15 ms after the signal"),
    "silent (SIGSTOP)": (
        signal.SIGSTOP,
        f"exclusive < 2 heartbeats ({2 * HB * 1000:.0f} ms) after known",
    ),
}


def boottime_minus_monotonic() -> float:
    """The offset from the nodes' log clock (monotonic) to the stamps' (CLOCK_BOOTTIME)."""
    return time.clock_gettime(_BOOTTIME) - time.monotonic()


def logged_at(cluster: ProcessCluster, node: str, prefix: str, suffix: str) -> float | None:
    """When ``node`` first logged a command line starting ``prefix`` and ending ``suffix``."""
    for line in cluster.log_path(node).read_text(errors="replace").splitlines():
        if '"almost_raft.command"' not in line or suffix not in line:
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            message = str(entry.get("message", ""))
            if message.startswith(prefix) and message.endswith(suffix):
                return float(entry["monotonic"])
    return None


def one_trial(
    cluster: ProcessCluster, stamps: Path, signum: signal.Signals, offset: float
) -> dict[str, float]:
    def steady() -> tuple[str, int] | None:
        # A leader every node agrees on, whose command runs.
        agreed = cluster.agreed_leader()
        if agreed is None or not any(life.term == agreed[1] for life in lives(read_stamps(stamps))):
            return None
        return agreed

    cluster.wait_for(steady, DEADLINE, "an agreed leader whose command runs")
    time.sleep(SETTLE)
    leader, term = cluster.wait_for(steady, DEADLINE, "an agreed leader whose command runs")
    cluster.leader_events()  # forget what was logged so far
    sent = cluster.kill(leader, signum) + offset
    # The first command of a newer term: a leader elected meanwhile that lost its term
    # before it held a lease ran none, and does not count.
    first = cluster.wait_for(
        lambda: next((life for life in lives(read_stamps(stamps)) if life.term > term), None),
        DEADLINE,
        f"a command of a term after {term}",
    )
    new_leader, new_term, started = first.node, first.term, first.start
    known = (
        min(
            event.monotonic
            for event in cluster.leader_events()
            if event.node == new_leader and event.is_self and event.term == new_term
        )
        + offset
    )
    # The node holds the lease and may start its work: the command's process is then
    # forked (a few ms), and its own first stamp comes a Python start-up later still.
    decided = offset + cluster.wait_for(
        lambda: logged_at(
            cluster,
            new_leader,
            "holding the lease of",
            f"term {new_term}: starting the leader command",
        ),
        DEADLINE,
        "the lease log line",
    )
    spawned = offset + cluster.wait_for(
        lambda: logged_at(cluster, new_leader, "started", f"for term {new_term}"),
        DEADLINE,
        "the spawn log line",
    )
    if signum == signal.SIGSTOP:
        cluster.cont(leader)
    else:
        cluster.restart(leader)
    return {
        "known_s": known - sent,
        "exclusive_s": decided - sent,
        "known_to_exclusive_s": decided - known,
        "spawned_s": spawned - sent,
        "command_running_s": started - sent,
    }


def measure(label: str, signum: signal.Signals, trials: int, directory: Path) -> dict[str, Any]:
    stamps = directory / f"stamps-{signum.name}.txt"
    results = []
    command = [sys.executable, "-c", STAMPING_COMMAND, str(stamps)]
    with ProcessCluster(5, timings=TIMINGS, command=command, parent=directory) as cluster:
        offset = boottime_minus_monotonic()
        for index in range(trials):
            results.append(one_trial(cluster, stamps, signum, offset))
            if (index + 1) % 10 == 0 or index + 1 == trials:
                print(f"  {label}: {index + 1}/{trials} trials", flush=True)
        # Let the last command run a moment, so an overlap could not hide at the end.
        time.sleep(0.2)
    found = overlaps(read_stamps(stamps))
    return {
        "label": label,
        "target": KINDS[label][1],
        "known": summarize([r["known_s"] for r in results]),
        "exclusive": summarize([r["exclusive_s"] for r in results]),
        "known_to_exclusive": summarize([r["known_to_exclusive_s"] for r in results]),
        "spawned": summarize([r["spawned_s"] for r in results]),
        "command_running": summarize([r["command_running_s"] for r in results]),
        "overlaps": found,
        "trials": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 trials of each kind")
    parser.add_argument("--dir", type=Path, default=None, help="where the clusters run")
    args = parser.parse_args()
    trials = 5 if args.quick else args.trials

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        reports = [
            measure(label, signum, trials, Path(scratch)) for label, (signum, _) in KINDS.items()
        ]
    rows = []
    for report in reports:
        rows.append(
            [
                report["label"],
                report["known"]["median_ms"],
                report["known"]["max_ms"],
                report["exclusive"]["median_ms"],
                report["exclusive"]["max_ms"],
                report["known_to_exclusive"]["median_ms"],
                report["known_to_exclusive"]["max_ms"],
                report["spawned"]["median_ms"],
                report["command_running"]["median_ms"],
                len(report["overlaps"]),
                report["target"],
            ]
        )
    print(
        table(
            [
                "failure",
                "known median ms",
                "known max ms",
                "exclusive median ms",
                "exclusive max ms",
                "known→exclusive median ms",
                "known→exclusive max ms",
                "command forked median ms",
                "command's first stamp median ms",
                "overlaps",
                "target",
            ],
            rows,
        )
    )
    path = write_json(
        "exclusive",
        {"machine": machine(), "timings": dataclasses.asdict(TIMINGS), "kinds": reports},
    )
    print(f"wrote {path}")
    return 1 if any(report["overlaps"] for report in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())

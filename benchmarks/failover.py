"""Failover of a 5-process cluster over TCP: crash, clean shutdown, silent failure.

    .venv/bin/python benchmarks/failover.py --trials 200      # about 15 minutes
    .venv/bin/python benchmarks/failover.py --quick           # under a minute

Starts ``almost-raft run`` processes on 127.0.0.1 (election timeout 150-300 ms, heartbeat
50 ms) and, trial after trial, signals the leader:

- SIGKILL, a crash: the followers' connections break and a redial is refused, which the
  transport reports, so they campaign after ``leader_down_delay`` (0-20 ms).
- SIGTERM, a clean shutdown: the leader hands over with TimeoutNow before it exits.
- SIGSTOP, a silent failure: the sockets stay open and nothing is said, so only the
  election timeout can notice.

Each failover is timed from the signal (this process's ``time.monotonic()``) to the
moment the last live node logged the new leader (the nodes log the same clock). Prints
median, p99 and max against the targets, where the milliseconds went, and writes
``benchmarks/results/failover.json`` and ``failover.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ideal_failover, machine, plot_cdfs, summarize, table, write_json
from _process_trials import Trial, TrialRun, breakdown, run_trials

from almost_raft import FileStore, HardState
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

TIMINGS = ClusterTimings(
    election_timeout_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=50
)

# Connections count as healthy (no redial backoff) once up for the TCP transport's
# backoff_max of 1 s; a crash of a leader elected less than that ago is noticed a redial
# backoff later. Settling past it measures the steady state.
KINDS: dict[str, tuple[signal.Signals, float, str]] = {
    "crash (SIGKILL)": (signal.SIGKILL, 1.2, "median < 15 ms, p99 < 50 ms"),
    "hand-over (SIGTERM)": (signal.SIGTERM, 1.2, "median < 10 ms"),
    "silent (SIGSTOP)": (signal.SIGSTOP, 0.3, "median within 10% of best case, splits < 5%"),
}


def measure(
    size: int,
    timings: ClusterTimings,
    signum: signal.Signals,
    trials: int,
    settle: float,
    seed: int,
    label: str,
    parent: Path | None = None,
) -> TrialRun:
    """Start a cluster of ``size`` processes and run ``trials`` failovers on it.

    ``parent`` is where the cluster's directory (state files included) goes; the system's
    temporary directory if ``None``.
    """
    heartbeat = timings.heartbeat_interval_ms / 1000

    def progress(done: int, trial: Trial | None) -> None:
        if trial is not None and (done % 25 == 0 or done == trials):
            print(f"  {label}: {done}/{trials} trials", flush=True)

    with ProcessCluster(size, timings=timings, parent=parent) as cluster:
        return run_trials(
            cluster,
            signum,
            trials,
            heartbeat=heartbeat,
            settle=settle,
            rng=random.Random(seed),
            progress=progress,
        )


def store_save_seconds(directory: Path | None, saves: int = 30) -> list[float]:
    """How long a node's state file takes to save there (the first save creates the file
    with a rename; each later one overwrites a slot and calls fdatasync).

    Every vote, and every candidate's own term and vote, waits for one such save before
    its message leaves, so two of them lie on the path of every election.
    """
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        store = FileStore(Path(scratch) / "bench.state")
        took = []
        for term in range(1, saves + 1):
            started = time.perf_counter()
            store.save(HardState(term, "n1"))
            took.append(time.perf_counter() - started)
        store.close()
    return took


def silent_best_case(run: TrialRun, timings: ClusterTimings, followers: int) -> dict[str, float]:
    """The best case of a silent failure: the earliest timer, plus the measured election.

    The timer part is :func:`ideal_failover` with no message cost; the election part is the
    median time from the first pre-vote to the last node knowing the leader, over trials
    with one round only (so it includes the real round trips and the fsyncs of the votes).
    """
    clean = [
        t.all_know - t.first_prevote
        for t in run.trials
        if not t.contested and t.first_prevote is not None
    ]
    election_ms = summarize(clean)["median_ms"]
    timer = ideal_failover(
        followers,
        (timings.election_timeout_ms / 1000, timings.election_timeout_max_ms / 1000),
        timings.heartbeat_interval_ms / 1000,
        one_way=0.0,
        rounds=0,
    )
    return {
        "timer_median_ms": timer["median_ms"],
        "election_median_ms": election_ms,
        "best_median_ms": timer["median_ms"] + election_ms,
    }


def report(label: str, run: TrialRun) -> dict[str, Any]:
    """Numbers of one kind of failover, as printed and as written to JSON."""
    return {
        "label": label,
        "elected": summarize([t.elected for t in run.trials]),
        "all_know": summarize([t.all_know for t in run.trials]),
        "breakdown": breakdown(run.trials),
        "timed_out": run.timed_out,
        "discarded": run.discarded,
        "trials": [
            {
                "elected": t.elected,
                "all_know": t.all_know,
                "evidence": t.evidence,
                "first_prevote": t.first_prevote,
                "first_campaign": t.first_campaign,
                "prevotes": t.prevotes,
                "campaigns": t.campaigns,
                "terms": t.new_term - t.old_term,
            }
            for t in run.trials
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="failovers per kind")
    parser.add_argument("--quick", action="store_true", help="5 trials per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=["kill", "term", "stop"], action="append")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the nodes keep their term and vote (default: the system's temporary "
        "directory); /dev/shm takes the disk's fsync out of every vote",
    )
    parser.add_argument("--name-suffix", default="", help="appended to the result file names")
    args = parser.parse_args()
    trials = 5 if args.quick else args.trials
    chosen = {"kill": "crash (SIGKILL)", "term": "hand-over (SIGTERM)", "stop": "silent (SIGSTOP)"}
    labels = [chosen[k] for k in args.only] if args.only else list(KINDS)

    info = machine()
    print(
        f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_at_start']}"
    )
    print(
        f"5 processes, election timeout {TIMINGS.election_timeout_ms}-"
        f"{TIMINGS.election_timeout_max_ms} ms, heartbeat {TIMINGS.heartbeat_interval_ms} ms, "
        f"{trials} trials per kind"
    )
    state_dir = str(args.state_dir or tempfile.gettempdir())
    saves = summarize(store_save_seconds(args.state_dir))
    print(
        f"state files under {state_dir}; one save takes {saves['median_ms']:.1f} ms "
        f"(median, p90 {saves['p90_ms']:.1f} ms)"
    )
    results: dict[str, Any] = {
        "machine": info,
        "timings": dataclasses.asdict(TIMINGS),
        "state_dir": state_dir,
        "state_save": saves,
        "kinds": {},
    }
    rows = []
    series = {}
    for index, label in enumerate(labels):
        signum, settle, target = KINDS[label]
        started = time.monotonic()
        run = measure(5, TIMINGS, signum, trials, settle, args.seed + index, label, args.state_dir)
        numbers = report(label, run)
        numbers["wall_seconds"] = time.monotonic() - started
        if signum == signal.SIGSTOP:
            numbers["best_case"] = silent_best_case(run, TIMINGS, followers=4)
        results["kinds"][label] = numbers
        know, parts = numbers["all_know"], numbers["breakdown"]
        best = numbers.get("best_case", {}).get("best_median_ms", float("nan"))
        rows.append(
            [
                label,
                know["n"],
                know["median_ms"],
                know["p99_ms"],
                know["max_ms"],
                numbers["elected"]["median_ms"],
                f"{parts['split_share'] * 100:.1f}%",
                f"{parts['contested_share'] * 100:.0f}%",
                best,
                target,
                run.timed_out,
            ]
        )
        series[label] = [t.all_know for t in run.trials]
        print(
            f"{label}: median {know['median_ms']:.1f} ms, p99 {know['p99_ms']:.1f} ms; steps "
            f"(median ms after the signal): evidence {parts['evidence_ms']:.1f}, first pre-vote "
            f"{parts['first_prevote_ms']:.1f}, first election {parts['first_campaign_ms']:.1f}, "
            f"elected {parts['elected_ms']:.1f}, all know {parts['all_know_ms']:.1f}",
            flush=True,
        )
    results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    headers = [
        "failure",
        "trials",
        "median ms",
        "p99 ms",
        "max ms",
        "elected median ms",
        "split votes",
        "contested",
        "best case median ms",
        "target",
        "timed out",
    ]
    print()
    print(table(headers, rows))
    name = "failover" + ("_quick" if args.quick else "") + (args.name_suffix or "")
    path = write_json(name, results)
    print(f"wrote {path}")
    png = plot_cdfs(
        name,
        series,
        "5 processes over TCP, 150-300 ms: time until all live nodes know the new leader",
        log_x=True,
    )
    if png is not None:
        print(f"wrote {png}")


if __name__ == "__main__":
    main()

"""Failover of a 5-process cluster over TCP: crash, clean shutdown, silent failure.

    .venv/bin/python benchmarks/failover.py --trials 200      # about 15 minutes
    .venv/bin/python benchmarks/failover.py --quick           # under a minute
    .venv/bin/python benchmarks/failover.py --only kill --trials 50 --delay 20 --jitter 10
    .venv/bin/python benchmarks/failover.py --only kill --trials 50 --delay 20 --jitter 10 \
        --loss 0.05
    .venv/bin/python benchmarks/failover.py --netns --only kill --trials 50 --delay 20 \
        --jitter 10                                             # as root

Starts ``almost-raft run`` processes on 127.0.0.1 (election timeout 150-300 ms, heartbeat
50 ms) and, trial after trial, signals the leader:

- SIGKILL, a crash: the followers' connections break and a redial is refused, which the
  transport reports, so they campaign in turns ``leader_down_delay`` apart (the first at
  once, with the pre-votes it asked for when its connection broke).
- SIGTERM, a clean shutdown: the leader hands over with TimeoutNow before it exits.
- SIGSTOP, a silent failure: the sockets stay open and nothing is said, so only the
  election timeout can notice.

With ``--delay``, ``--jitter`` or ``--loss`` every message travels through a proxy per
directed link (``almost_raft.chaos.ProxyNetwork``) that delays each frame by ``delay`` ±
``jitter`` ms one way, keeping the order, and loses a share ``loss`` of frames and dials,
which arrive a TCP retransmission timeout later. A killed leader's refused redial gets
through the proxy as a refusal, after a round trip.

With ``--netns`` (root only) each node runs in a network namespace of its own
(``almost_raft.chaos.NamespaceNetwork``) and the kernel's TCP carries the messages;
``--delay`` and ``--jitter`` hold each IP packet, and ``--loss`` drops that share of
packets (SYNs, ACKs and FINs too), which TCP then retransmits itself. The result files get
a ``-netns`` suffix.

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
from almost_raft.chaos import LinkState, NamespaceNetwork, ProxyNetwork
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

# What a crash should cost over a real network: the voters' refused redials (three one-way
# delays), their answers to the pre-votes the first in line asked for when its connection
# ended (one), a vote round (two) and the first heartbeat (one): about seven one-way delays.
LINK_TARGETS: dict[tuple[signal.Signals, bool], str] = {
    (signal.SIGKILL, False): "median <= 170 ms, p99 <= 250 ms, 95% in one term (20 ± 10 ms)",
    (signal.SIGKILL, True): "median <= 250 ms, p99 <= 600 ms (20 ± 10 ms, 5% loss)",
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
    link: LinkState | None = None,
    netns: dict[str, Any] | None = None,
) -> TrialRun:
    """Start a cluster of ``size`` processes and run ``trials`` failovers on it.

    ``parent`` is where the cluster's directory (state files included) goes; the system's
    temporary directory if ``None``. ``link``, if given, is what every directed link
    between the nodes does, through a proxy per link. If ``netns`` is given, the nodes
    run in network namespaces instead, ``link`` applies to their packets, and the
    forwarder's packet counters are put into ``netns``.
    """
    heartbeat = timings.heartbeat_interval_ms / 1000

    def progress(done: int, trial: Trial | None) -> None:
        if trial is not None and (done % 25 == 0 or done == trials):
            print(f"  {label}: {done}/{trials} trials", flush=True)

    def trials_on(cluster: ProcessCluster) -> TrialRun:
        return run_trials(
            cluster,
            signum,
            trials,
            heartbeat=heartbeat,
            settle=settle,
            rng=random.Random(seed),
            progress=progress,
        )

    ids = [f"n{i}" for i in range(1, size + 1)]
    if netns is not None:
        with NamespaceNetwork(ids, seed=seed) as namespaces:
            namespaces.set_all(link or LinkState())
            cluster = ProcessCluster(
                size,
                timings=timings,
                parent=parent,
                host=namespaces.address,
                spawn_prefix=namespaces.exec_prefix,
            )
            try:
                with cluster:
                    return trials_on(cluster)
            finally:
                netns.update(dataclasses.asdict(namespaces.stats()))
    if link is None:
        with ProcessCluster(size, timings=timings, parent=parent) as cluster:
            return trials_on(cluster)
    real: dict[str, tuple[str, int]] = {}
    with ProxyNetwork(ids, real.__getitem__, seed) as network:
        for src, dst in network.links:
            network.set_state(src, dst, link)
        cluster = ProcessCluster(size, timings=timings, parent=parent, peer_address=network.address)
        with cluster:
            real.update(cluster.addresses)
            return trials_on(cluster)


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
                "early_prevote": t.early_prevote,
                "winner_evidence": t.winner_evidence,
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
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay per link, ms")
    parser.add_argument("--jitter", type=float, default=0.0, help="± this much of it, ms")
    parser.add_argument(
        "--loss", type=float, default=0.0, help="share of frames lost and retransmitted (0-1)"
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="each node in a network namespace of its own, the kernel's TCP between them, "
        "the delay, jitter and loss on its IP packets (needs root)",
    )
    args = parser.parse_args()
    if args.netns and (reason := NamespaceNetwork.unavailable_reason()) is not None:
        parser.error(reason)
    link = None
    if args.delay or args.jitter or args.loss:
        try:
            link = LinkState(delay=args.delay / 1000, jitter=args.jitter / 1000, loss=args.loss)
        except ValueError as exc:
            parser.error(str(exc))
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
        + (
            ""
            if link is None
            else f", links {args.delay:g} ± {args.jitter:g} ms one way, {args.loss:.0%} loss"
        )
        + (", in network namespaces (kernel TCP)" if args.netns else "")
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
        "link": None if link is None else dataclasses.asdict(link),
        "network": "netns" if args.netns else ("proxy" if link is not None else "loopback"),
        "kinds": {},
    }
    rows = []
    series = {}
    for index, label in enumerate(labels):
        signum, settle, target = KINDS[label]
        if link is not None:
            target = LINK_TARGETS.get((signum, bool(link.loss)), "-")
        started = time.monotonic()
        packets: dict[str, Any] | None = {} if args.netns else None
        run = measure(
            5,
            TIMINGS,
            signum,
            trials,
            settle,
            args.seed + index,
            label,
            args.state_dir,
            link,
            packets,
        )
        numbers = report(label, run)
        numbers["wall_seconds"] = time.monotonic() - started
        if packets is not None:
            numbers["packets"] = packets
            print(f"  {label}: packets {packets}", flush=True)
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
                f"{sum(1 for t in run.trials if t.new_term - t.old_term == 1)}/{len(run.trials)}",
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
            f"(median ms after the signal): early pre-vote {parts['early_prevote_ms']:.1f}, "
            f"evidence {parts['evidence_ms']:.1f} (the winner's "
            f"{parts['winner_evidence_ms']:.1f}), first pre-vote "
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
        "one term",
        "split votes",
        "contested",
        "best case median ms",
        "target",
        "timed out",
    ]
    print()
    print(table(headers, rows))
    name = (
        "failover"
        + ("_quick" if args.quick else "")
        + (args.name_suffix or "")
        + ("-netns" if args.netns else "")
    )
    path = write_json(name, results)
    print(f"wrote {path}")
    png = plot_cdfs(
        name,
        series,
        "5 processes over TCP"
        + (" in network namespaces" if args.netns else "")
        + ", 150-300 ms: time until all live nodes know the new leader",
        log_x=True,
    )
    if png is not None:
        print(f"wrote {png}")


if __name__ == "__main__":
    main()

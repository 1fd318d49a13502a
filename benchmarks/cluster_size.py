"""Failover time against cluster size: 3, 5, 7, 9 and 15 processes over TCP.

    .venv/bin/python benchmarks/cluster_size.py --trials 20    # about 5 minutes
    .venv/bin/python benchmarks/cluster_size.py --quick        # under a minute

For each size, a cluster of ``almost-raft run`` processes (election timeout 150-300 ms,
heartbeat 50 ms) loses its leader to SIGKILL (a crash the transport notices) and to
SIGSTOP (a silent failure), trial after trial, timed from the signal until every live
node knows the new leader. All processes share this machine's cores, so the larger
clusters also measure a busier machine. Writes ``benchmarks/results/cluster_size.json``.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

from _common import machine, plot_cdfs, summarize, table, write_json
from _process_trials import breakdown
from failover import TIMINGS, measure

SIZES = (3, 5, 7, 9, 15)
KINDS = (("crash (SIGKILL)", signal.SIGKILL, 1.2), ("silent (SIGSTOP)", signal.SIGSTOP, 0.3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="failovers per size and kind")
    parser.add_argument("--quick", action="store_true", help="3 trials, sizes 3 and 5")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, help="where the nodes keep term and vote")
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    sizes = (3, 5) if args.quick else SIZES
    info = machine()
    print(
        f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_at_start']}; {trials} trials per size and kind"
    )
    results: dict[str, Any] = {"machine": info, "sizes": {}}
    rows = []
    series: dict[str, list[float]] = {}
    for size in sizes:
        entry: dict[str, Any] = {}
        row: list[object] = [size]
        for index, (label, signum, settle) in enumerate(KINDS):
            run = measure(
                size,
                TIMINGS,
                signum,
                trials,
                settle,
                args.seed * 1000 + size * 10 + index,
                f"{size} nodes, {label}",
                args.state_dir,
            )
            know = summarize([t.all_know for t in run.trials])
            parts = breakdown(run.trials)
            entry[label] = {
                "all_know": know,
                "elected": summarize([t.elected for t in run.trials]),
                "breakdown": parts,
                "timed_out": run.timed_out,
                "all_know_seconds": [t.all_know for t in run.trials],
            }
            series[f"{size} nodes, {label}"] = [t.all_know for t in run.trials]
            row += [know["median_ms"], know["p99_ms"], f"{parts['split_share'] * 100:.0f}%"]
            print(
                f"{size} nodes, {label}: median {know['median_ms']:.1f} ms, "
                f"p99 {know['p99_ms']:.1f} ms, splits {parts['split_share'] * 100:.0f}%",
                flush=True,
            )
        results["sizes"][str(size)] = entry
        rows.append(row)
    headers = ["nodes"]
    for label, _, _ in KINDS:
        headers += [f"{label} median ms", "p99 ms", "split votes"]
    print()
    print(table(headers, rows))
    results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    name = "cluster_size" + ("_quick" if args.quick else "")
    print(f"wrote {write_json(name, results)}")
    png = plot_cdfs(name, series, "Failover by cluster size, 150-300 ms", log_x=True)
    if png is not None:
        print(f"wrote {png}")


if __name__ == "__main__":
    main()

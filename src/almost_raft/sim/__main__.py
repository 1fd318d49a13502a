"""``python -m almost_raft.sim``: run many seeds and print what they found.

Exits with status 1 if any seed broke an invariant, naming the first failing seeds so
each can be replayed with ``--seed-start SEED --seeds 1`` (or ``run_seed(SEED)``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._batch import Summary, run_seeds
from ._run import DEFAULT_CONFIG
from ._schedule import MEMBERSHIP_PROFILE

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the seeds, print the summary; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m almost_raft.sim",
        description=(
            "Simulate election clusters under crashes, partitions, loss, delay and "
            "duplication; check Election Safety, terms, votes and liveness after a heal."
        ),
    )
    parser.add_argument("--seeds", type=_positive_int, default=1000, help="seeds to run")
    parser.add_argument("--seed-start", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds per seed")
    parser.add_argument("--nodes", type=_positive_int, default=5, help="cluster size")
    parser.add_argument("--no-faults", action="store_true", help="a healthy cluster only")
    parser.add_argument(
        "--membership",
        action="store_true",
        help="leaders also add, remove, replace and promote members (two spare nodes)",
    )
    parser.add_argument("--json", type=Path, help="also write the summary here as JSON")
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error("--duration must be greater than 0")
    if args.membership and args.no_faults:
        parser.error("--membership changes members among faults; drop --no-faults")

    seeds = range(args.seed_start, args.seed_start + args.seeds)
    summary = run_seeds(
        seeds,
        jobs=args.jobs,
        nodes=args.nodes,
        duration=args.duration,
        faults=MEMBERSHIP_PROFILE if args.membership else not args.no_faults,
        spares=2 if args.membership else 0,
    )
    print(format_summary(summary, first_seed=args.seed_start, duration=args.duration))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = summary.as_dict()
        report["first_seed"] = args.seed_start
        report["duration"] = args.duration
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if summary.ok else 1


def format_summary(summary: Summary, *, first_seed: int, duration: float) -> str:
    """The summary as the lines the command prints."""
    data = summary.as_dict()
    last_seed = first_seed + summary.seeds - 1
    config = DEFAULT_CONFIG
    low, high = config.election_timeout_range
    lines = [
        f"seeds:              {summary.seeds} ({first_seed}..{last_seed}), {summary.nodes} "
        f"nodes, {duration:g} simulated s each",
        f"timings:            election timeout {low * 1000:g}-{high * 1000:g} ms, "
        f"heartbeat {config.heartbeat_interval * 1000:g} ms",
        f"simulated:          {summary.simulated_seconds:,.0f} s, "
        f"{summary.node_seconds:,.0f} node-seconds, {summary.events:,} events",
        f"elections:          {summary.elections_started:,} started, "
        f"{summary.elections_won:,} won ({summary.pre_votes_started:,} pre-votes); "
        f"highest term {summary.highest_term}",
        f"leader changes:     {summary.leader_changes:,}; crashes {summary.crashes:,}; "
        f"hand-overs {summary.handovers:,}; leader-down reports {summary.leader_down_reports:,}"
        f"; early pre-votes {summary.early_pre_votes:,}",
    ]
    heal = data["leader_after_heal_seconds"]
    if heal:
        lines.append(
            f"leader after heal:  p50 {heal['p50'] * 1000:.0f} ms, p99 {heal['p99'] * 1000:.0f}"
            f" ms, p99.9 {heal['p999'] * 1000:.0f} ms, max {heal['max'] * 1000:.0f} ms "
            f"(bound {summary.liveness_bound * 1000:.0f} ms)"
        )
    if summary.ok:
        lines.append("violations:         none")
    else:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.violations_by_kind.items()))
        lines.append(f"violations:         {kinds} (seeds)")
        lines.append("first failing seeds (replay with run_seed(seed)):")
        lines.extend(
            f"  {seed}: {summary.first_violations[seed]}" for seed in summary.failing_seeds
        )
    lines.append(
        f"wall time:          {summary.wall_seconds:.1f} s with {summary.jobs} jobs: "
        f"{data['seeds_per_minute']:,.0f} seeds/min, "
        f"{data['node_seconds_per_wall_second']:,.0f} simulated node-seconds per second"
    )
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())

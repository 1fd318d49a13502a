"""``python -m almost_raft.chaos``: a chaos run against real processes, or a log check.

Exits with status 1 on a violation (or, for a run, if the healed cluster elects no
leader), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._checker import check, read_events
from ._harness import ChaosOptions, print_report, run_chaos

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run or check, print the summary; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check"]:
        return _check(args[1:])
    parser = argparse.ArgumentParser(
        prog="python -m almost_raft.chaos",
        description=(
            "Run a cluster of real almost-raft processes through seeded faults (message "
            "loss, delay, one-way and two-way cuts, partitions, SIGKILL and restart, "
            "SIGSTOP and SIGCONT) and check at most one leader per term and terms that "
            "never go down. `python -m almost_raft.chaos check LOG...` checks logs only."
        ),
    )
    parser.add_argument("--seed", type=int, default=1, help="draws the fault schedule")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--nodes", type=int, default=5, help="cluster size (at least 3)")
    parser.add_argument("--keep-logs", type=Path, help="copy the nodes' logs into this directory")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    parser.add_argument(
        "--commands",
        choices=("exit-on-sigterm", "ignore-sigterm"),
        help="every node runs an exclusive leader command that stamps its life; the run "
        "fails if two ever ran at once",
    )
    options = parser.parse_args(args)
    if options.duration < 2:
        parser.error("--duration must be at least 2 seconds")
    if options.nodes < 3:
        parser.error("--nodes must be at least 3")
    report = run_chaos(
        ChaosOptions(
            seed=options.seed,
            duration=options.duration,
            size=options.nodes,
            keep_logs=options.keep_logs,
            commands=_COMMANDS[options.commands],
        ),
        out=None if options.quiet else sys.stdout,
    )
    print_report(report, sys.stdout)
    return 0 if report.ok else 1


# --commands: none, commands that exit on SIGTERM, or ones that ignore it.
_COMMANDS: dict[str | None, bool | str] = {
    None: False,
    "exit-on-sigterm": True,
    "ignore-sigterm": "ignore-sigterm",
}


def _check(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m almost_raft.chaos check",
        description="Check JSON node logs: one leader per term, terms never going down.",
    )
    parser.add_argument("logs", nargs="+", type=Path, help="one JSON log file per node")
    options = parser.parse_args(argv)
    events = []
    for path in options.logs:
        try:
            events += read_events(path)
        except OSError as exc:
            parser.error(f"cannot read {path}: {exc.strerror}")
    result = check(events)
    print(
        f"{len(events)} leadership events, {result.elections} elections, "
        f"leaders: {', '.join(result.leaders) or '-'}, "
        f"longest leaderless window {result.longest_leaderless:.3f}s"
    )
    print(f"violations: {len(result.violations)}")
    for violation in result.violations:
        print(f"  {violation.kind}: {violation.message}")
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())

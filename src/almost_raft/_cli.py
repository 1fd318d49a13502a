"""The ``almost-raft`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    code: int = handler(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="almost-raft", description="Raft leader election: one leader among a group."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run a local 5-node cluster and watch it fail over", description=_demo_doc()
    )
    demo.add_argument("--nodes", type=_cluster_size, default=5, help="cluster size (default 5)")
    demo.add_argument("--kills", type=_non_negative, default=4, help="leader kills (default 4)")
    demo.add_argument("--seed", type=int, default=None, help="seed for a repeatable run")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the library's log")
    demo.set_defaults(handler=_run_demo)
    return parser


def _demo_doc() -> str:
    return (
        "Starts a cluster, waits for a leader, kills the leader several times (restarting "
        "each killed node so it rejoins) and prints every failover with its time."
    )


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import DemoOptions, run_in_process_demo

    _configure_logging(logging.INFO if args.verbose else logging.ERROR)
    options = DemoOptions(nodes=args.nodes, kills=args.kills, seed=args.seed)
    try:
        asyncio.run(run_in_process_demo(options))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TimeoutError:
        print("demo failed: no leader within the deadline", file=sys.stderr)
        return 1
    return 0


def _configure_logging(level: int) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _cluster_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 99:
        raise argparse.ArgumentTypeError("must be between 1 and 99")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value

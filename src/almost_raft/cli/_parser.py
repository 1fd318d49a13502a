"""The ``almost-raft`` command line's arguments, read once with argparse.

argparse and gettext are what an ``almost-raft run`` process would otherwise carry for
its whole life for having read its command line once (0.3 MiB): the command line reads
them through :func:`parse` and lets this module, argparse and gettext go afterwards
(``cli/_main.py``). Nothing here may be kept: :func:`parse` hands back plain values.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

__all__ = ["build_parser", "parse"]


def parse(argv: Sequence[str] | None) -> SimpleNamespace | None:
    """The arguments, with ``subcommand`` naming the command given; None (after printing
    the help) when none is.

    Raises:
        SystemExit: ``--help`` or ``--version`` was given, or the arguments are wrong
            (argparse has printed why).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "subcommand", None) is None:
        parser.print_help()
        return None
    check = getattr(args, "check", None)
    if check is not None:
        problem = check(args)
        if problem is not None:
            args.parser.error(problem)
    # Plain values only: an argparse.Namespace would keep argparse loaded.
    return SimpleNamespace(
        **{name: value for name, value in vars(args).items() if name not in ("check", "parser")}
    )


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, given the terminal's width so that it needs no shutil.

    argparse builds a formatter for every ``add_argument()``, and one without a width
    imports shutil to ask the terminal, and shutil imports bz2 and lzma: about 0.9 MiB
    that every ``almost-raft run`` process kept for its whole life.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            # The margin argparse leaves when it asks the terminal itself.
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose help, and its subcommands' help, uses :class:`_HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size()`` finds it; 80 if unknown."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        columns = 0 if stdout is None else os.get_terminal_size(stdout.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns if columns > 0 else 80


_EXIT_CODES = (
    "exit status: 0 when every reachable node agrees on one leader; 1 when they do not, or "
    "no node answered; 2 for a bad command line or cluster file"
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, every command included."""
    parser = _ArgumentParser(
        prog="almost-raft", description="Raft leader election: one leader among a group."
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version of almost-raft and exit"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run a local 5-node cluster and watch it fail over", description=_demo_doc()
    )
    demo.add_argument(
        "--nodes", type=_cluster_size, default=5, help="cluster size, 3 to 99 (default 5)"
    )
    demo.add_argument("--kills", type=_non_negative, default=4, help="leader kills (default 4)")
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="run every node in this process on an in-memory network instead of as processes",
    )
    demo.add_argument(
        "--seed", type=_integer, default=None, help="seed for a repeatable run (with --in-process)"
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="show the library's log")
    demo.set_defaults(subcommand="demo", check=_check_demo, parser=demo)

    # What `run` and `status` share is declared, parsed and loaded in one place.
    cluster = _ArgumentParser(add_help=False)
    cluster.add_argument("--config", required=True, help="the cluster file (TOML)")

    run = commands.add_parser(
        "run",
        parents=[cluster],
        help="run one node of a real cluster",
        description="Run one node of the cluster described by --config, until SIGTERM or "
        "SIGINT. With '-- COMMAND ARGS', COMMAND runs only while this node is leader, with "
        "ALMOST_RAFT_TERM (the fencing token), ALMOST_RAFT_NODE_ID and ALMOST_RAFT_LEADER "
        "in its environment. By default it runs exclusively: only while this node holds "
        "a lease, so that no two nodes' commands ever run at once (given clocks within "
        "max_clock_drift), and a watchdog process stops it at the lease's end even if "
        "this node is frozen or cut off. It gets SIGTERM when leadership is lost and "
        "SIGKILL after --grace seconds or at the lease's end, whichever comes first. Exit "
        "status: 0 after a clean shutdown; 2 when the cluster file, the options, the state "
        "file or the start-up (a port in use, a state directory that cannot be written, a "
        "leader command that cannot run, no watchdog for an exclusive command) is wrong, "
        "with one line that names the field and the fix.",
    )
    run.add_argument("--id", required=True, dest="node_id", help="this node's id in the file")
    run.add_argument("--state-dir", help="overrides state_dir of the cluster file")
    run.add_argument(
        "--http",
        type=_host_port,
        help="serve /status and /metrics on HOST:PORT (overrides the node's http field)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: one readable line per event (default); json: one JSON object per "
        "line, with the event's fields, for log collectors",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--grace",
        type=_positive_seconds,
        default=10.0,
        help="seconds from SIGTERM to SIGKILL when COMMAND must stop (default 10); when "
        "exclusive, capped by the lease: SIGKILL comes at the lease's end at the latest, and "
        "a node that cannot renew its lease gives at most half a lease (election_timeout * "
        "(1 - max_clock_drift) less a margin, halved: 0.47 s at the defaults), and never "
        "more than the lease has left when its next renewal is due",
    )
    run.add_argument(
        "--exclusive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run COMMAND only under a lease, watched by a watchdog process (default); "
        "--no-exclusive runs it whenever this node knows it leads, which is faster after "
        "a crash but may overlap another node's command for up to an election timeout",
    )
    run.add_argument(
        "--on-command-exit",
        choices=("step-down", "restart"),
        default="step-down",
        help="when COMMAND exits by itself while leader: step down so another node takes "
        "over (default), or restart it",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS")
    run.set_defaults(subcommand="run")

    status = commands.add_parser(
        "status",
        parents=[cluster],
        help="print one table of the whole cluster, from each node's /status",
        description="Ask every node's GET /status (the http address of each [nodes.ID] "
        "in the cluster file) and print one table.",
        epilog=_EXIT_CODES,
    )
    status.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=2.0,
        help="seconds to wait per node (default 2)",
    )
    status.set_defaults(subcommand="status")

    certs = commands.add_parser(
        "certs",
        help="make a cluster CA and node certificates for mutual TLS",
        description="Write ca.pem and ca.key (unless they exist) and NODE.pem and NODE.key "
        "for each NODE into --dir, for the [tls] section of the cluster file. Needs "
        "cryptography: pip install 'almost-raft[tls]'. Keep ca.key off the nodes.",
    )
    certs.add_argument("--dir", required=True, help="where the files go")
    certs.add_argument("--cluster", required=True, help="the cluster id, to name the CA")
    certs.add_argument(
        "--days", type=_positive_int, default=825, help="validity in days (default 825)"
    )
    certs.add_argument("node_ids", nargs="+", metavar="NODE", help="a node id to certify")
    certs.set_defaults(subcommand="certs")

    members = commands.add_parser(
        "members",
        parents=[cluster],
        help="list the members, or add or remove one, through the leader",
        description="List the configuration (members, voters, version) a node follows, "
        "or add or remove a member through the leader. Needs an admin address "
        "(nodes.ID.admin) in the cluster file for at least one node.",
        epilog="exit status: 0 done, 1 refused, unreachable or still pending (a pending "
        "change says what it waits for), 2 bad arguments or cluster file",
    )
    members.add_argument("--node", help="the node to ask first (default: each in turn)")
    members.add_argument(
        "--timeout", type=float, default=40.0, help="seconds to wait for an answer (default 40)"
    )
    actions = members.add_subparsers(title="actions", metavar="ACTION")
    listing = actions.add_parser("list", help="print the configuration")
    listing.set_defaults(op="list")
    add = actions.add_parser(
        "add",
        help="add a member (it joins as a non-voter, and is promoted once it has saved the "
        "configuration and answers the leader)",
    )
    add.add_argument("node_id", metavar="ID")
    add.add_argument("address", metavar="HOST:PORT", help="where the other members reach it")
    add.add_argument("--non-voter", action="store_true", help="keep it a non-voter")
    add.set_defaults(op="add")
    remove = actions.add_parser("remove", help="remove a member")
    remove.add_argument("node_id", metavar="ID")
    remove.set_defaults(op="remove")
    members.set_defaults(subcommand="members", op="list")
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from ..core._version import __version__

        print(f"almost-raft {__version__}")
        parser.exit()


def _check_demo(args: argparse.Namespace) -> str | None:
    if args.seed is not None and not args.in_process:
        return (
            "--seed needs --in-process: only the in-memory network is deterministic; "
            "real processes are timed by the operating system"
        )
    return None


def _demo_doc() -> str:
    return (
        "Starts a cluster, waits for a leader, kills the leader several times (restarting "
        "each killed node so it rejoins) and prints every failover with its time. By default "
        "each node is an 'almost-raft run' process on 127.0.0.1 over TCP, killed with SIGKILL."
    )


def _host_port(text: str) -> tuple[str, int]:
    from ..core._errors import ConfigError
    from ..node._cluster_config import parse_host_port

    try:
        return parse_host_port("--http", text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.fix) from None


def _positive_seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0, e.g. 2.5")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: must be 1 or more")
    return value


def _cluster_size(text: str) -> int:
    value = _integer(text)
    if not 3 <= value <= 99:
        raise argparse.ArgumentTypeError(
            f"{value} nodes: must be between 3 and 99; a cluster of 1 or 2 cannot fail over "
            "(a majority of 2 is both nodes)"
        )
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: must be 0 or more")
    return value

"""The ``almost-raft`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

from ..node._let_go import used_once

__all__ = ["main"]

#: The modules that reading the command line loads and nothing after it uses. They are
#: let go once it is read, before the command imports what it needs, which then takes
#: up their memory instead of new pages: ``almost-raft run`` lives for months.
_PARSING_ONLY = ("almost_raft.cli._parser", "argparse", "gettext")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _parse(argv)
    if args is None:
        return 2
    handler: Callable[[SimpleNamespace], int] = _HANDLERS[args.subcommand]
    try:
        return handler(args)
    except KeyboardInterrupt:
        # A Ctrl-C that lands outside a command's own handling (while it starts, or a
        # second one while it stops) ends the program without a traceback.
        print("interrupted", file=sys.stderr)
        return 130


def _parse(argv: Sequence[str] | None) -> SimpleNamespace | None:
    """The parsed arguments, or None (after printing the help) when no command is given.

    Raises:
        SystemExit: as :func:`._parser.parse` does.
    """
    with used_once(_PARSING_ONLY):
        return _read(argv)


def _read(argv: Sequence[str] | None) -> SimpleNamespace | None:
    # A function of its own, so that nothing of the parser is referenced any more when
    # used_once() collects it.
    from ._parser import parse

    return parse(argv)


def _run_demo(args: SimpleNamespace) -> int:
    from .demo._in_process import DemoOptions, run_in_process_demo
    from .demo._processes import ProcessDemoOptions, run_process_demo

    _configure_logging(logging.INFO if args.verbose else logging.ERROR)
    try:
        if args.in_process:
            options = DemoOptions(nodes=args.nodes, kills=args.kills, seed=args.seed)
            asyncio.run(_cancelled_by_first_interrupt(run_in_process_demo(options)))
        else:
            with _second_interrupt_waits():
                run_process_demo(ProcessDemoOptions(nodes=args.nodes, kills=args.kills))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TimeoutError as exc:
        print(f"demo failed: {exc or 'no leader within the deadline'}", file=sys.stderr)
        return 1
    return 0


async def _cancelled_by_first_interrupt(work: Coroutine[Any, Any, object]) -> None:
    """Run ``work``; the first Ctrl-C cancels it, further ones wait for it to clean up.

    Cancelling lets the demo close its elections the way any task's cancellation does;
    a KeyboardInterrupt raised in the middle of the event loop would skip that.

    Raises:
        KeyboardInterrupt: after ``work`` was cancelled by Ctrl-C and has cleaned up.
    """
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        loop.add_signal_handler(signal.SIGINT, still_stopping)
        task.cancel()

    def still_stopping() -> None:
        print("stopping the nodes; one moment", file=sys.stderr)

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        await work
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        # Ignored from now on: the demo has stopped and only the exit is left.
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _second_interrupt_waits() -> Iterator[None]:
    """The first Ctrl-C interrupts; further ones are ignored while the demo cleans up.

    The cleanup kills the node processes and removes their files, so a second Ctrl-C that
    cut it short would leave processes behind (and print a traceback).
    """
    import signal

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, still_stopping)
        raise KeyboardInterrupt

    def still_stopping(signum: int, frame: object) -> None:
        print("stopping the nodes; one moment", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_node(args: SimpleNamespace) -> int:
    from ..core._errors import AlmostRaftError
    from ..node._log_format import configure_logging
    from ..node._run import RunOptions, run_node

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    configure_logging(
        logging.DEBUG if args.verbose else logging.INFO, args.log_format, args.node_id
    )
    options = RunOptions(
        config_path=args.config,
        node_id=args.node_id,
        state_dir=args.state_dir,
        http=args.http,
        command=tuple(command),
        grace=args.grace,
        on_command_exit=args.on_command_exit,
        exclusive=args.exclusive,
    )
    try:
        try:
            asyncio.run(run_node(options))
        finally:
            # The node has stopped: a further Ctrl-C must not cut the exit short (the
            # interpreter's own default would end the process by the signal).
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except AlmostRaftError as exc:
        print(f"almost-raft run: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The start-up errors with a known cause are ConfigErrors naming the field; this
        # is for whatever the operating system refuses that no check foresaw.
        print(f"almost-raft run: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_status(args: SimpleNamespace) -> int:
    from ..core._errors import ConfigError
    from ..node._cluster_config import ClusterConfig
    from ._status import gather_reports, no_http_advice, print_cluster_status

    try:
        cluster = ClusterConfig.load(args.config)
    except ConfigError as exc:
        print(f"almost-raft status: {exc}", file=sys.stderr)
        return 2
    advice = no_http_advice(cluster)
    if advice is not None:
        print(f"almost-raft status: {advice}", file=sys.stderr)
        return 2
    reports = asyncio.run(gather_reports(cluster, args.timeout))
    return 0 if print_cluster_status(reports, sys.stdout) else 1


def _run_members(args: SimpleNamespace) -> int:
    from ._members import run_members

    return run_members(args)


def _run_certs(args: SimpleNamespace) -> int:
    from ..core._errors import ConfigError
    from ._certs import make_certificates

    try:
        files = make_certificates(args.dir, args.cluster, args.node_ids, days=args.days)
    except (ConfigError, ImportError, OSError) as exc:
        print(f"almost-raft certs: {exc}", file=sys.stderr)
        return 2
    print(f"CA: {files.ca} (key {files.ca_key}: keep it off the nodes)")
    for node_id, (cert, key) in files.nodes.items():
        print(f"{node_id}: {cert} {key}")
    return 0


def _configure_logging(level: int) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


_HANDLERS = {
    "demo": _run_demo,
    "run": _run_node,
    "status": _run_status,
    "certs": _run_certs,
    "members": _run_members,
}

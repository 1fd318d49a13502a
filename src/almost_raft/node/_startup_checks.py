"""Checks ``almost-raft run`` makes before it joins the cluster.

Each finds, at start and in one line that names the field, what would otherwise fail
later and obscurely: a state directory the node cannot write, a leader command that does
not exist (found only on becoming leader, so leadership would pass round the cluster
forever), or a certificate that names another node (refused by every peer).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from typing import Any

from ..core._errors import ConfigError
from ..transport.tcp._listener import ip_family

__all__ = ["check_can_listen", "check_leader_command", "check_state_dir", "listen_error"]


def check_state_dir(field: str, path: str) -> None:
    """Make sure ``path`` is a directory this node can create files in.

    Raises:
        ConfigError: it is a file, cannot be created or cannot be written; names ``field``.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(
            field, path, "is a file, not a directory: name a directory (it is created if missing)"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            field, path, f"cannot be created ({exc.strerror}): name a directory this user can make"
        ) from None
    # os.access() says yes to root even on a read-only mount, so make a file for real.
    probe = os.path.join(path, f".almost-raft-probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            field,
            path,
            f"cannot be written ({exc.strerror}): give this node's user write access to it, "
            "or name another directory",
        ) from None


def check_leader_command(argv: Sequence[str]) -> None:
    """Make sure the leader command's program exists and may be run.

    Resolved as the operating system will when the command starts: a name with a slash
    is a path, any other name is looked up in ``PATH``.

    Raises:
        ConfigError: field ``COMMAND``, naming the program and why it cannot run.
    """
    program = argv[0]
    if not program:
        raise ConfigError("COMMAND", program, "is empty: give the program to run after --")
    if os.sep in program:
        _check_executable(program, program)
        return
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return
    raise ConfigError(
        "COMMAND",
        program,
        "is not found in PATH: give its full path, or install it, before starting the node",
    )


def _check_executable(program: str, path: str) -> None:
    if not os.path.exists(path):
        raise ConfigError("COMMAND", program, "no such file: give the path of the program to run")
    if os.path.isdir(path):
        raise ConfigError("COMMAND", program, "is a directory: give the program to run")
    if not os.access(path, os.X_OK):
        raise ConfigError(
            "COMMAND",
            program,
            f"is not executable: chmod +x {program}, or run it through its "
            "interpreter (-- sh SCRIPT)",
        )


def check_can_listen(field: str, address: tuple[str, int]) -> None:
    """Bind ``address`` for a moment, the way the node will, and let it go.

    Done before the node starts anything, so that a port in use is one line and no
    half-started node. The real bind can still fail if another process takes the port in
    between; the node reports that with :func:`listen_error` too.

    Raises:
        ConfigError: the address cannot be resolved or listened on; names ``field``.
    """
    host, port = address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    family = ip_family(host)
    sockaddr: tuple[Any, ...]
    if family is not None:
        # As the transport does: an address needs no lookup, and a lookup would load the
        # IDNA codec (stringprep, unicodedata) into the node for its whole life.
        kind, proto, sockaddr = socket.SOCK_STREAM, 0, (host, port)
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ConfigError(
                field,
                shown,
                f"cannot be resolved ({exc.strerror}): give an IP address or a known name",
            ) from None
        # The first address only: that is the one the TCP transport listens on.
        family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the transport does: a port left in TIME_WAIT by a stopped node is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise listen_error(field, shown, exc) from None


def listen_error(field: str, address: str, exc: OSError) -> ConfigError:
    """The ConfigError for an address this node could not listen on."""
    if exc.errno == errno.EADDRINUSE:
        fix = (
            "is in use by another process (another node, or a node that is still "
            "running): stop it, or give this node another port"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        fix = "is not an address of this machine: give one of its own addresses, or 0.0.0.0"
    elif exc.errno == errno.EACCES:
        fix = "may not be used by this user (ports below 1024 need privileges): use another port"
    else:
        fix = f"cannot be listened on ({exc.strerror or exc}): give another address"
    return ConfigError(field, address, fix)

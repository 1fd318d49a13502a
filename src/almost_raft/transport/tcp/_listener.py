"""A listening TCP socket that hands each accepted connection over at once.

Why not ``asyncio.start_server``: on Python 3.11, a connection accepted just before
``Server.close()`` is dropped inside asyncio without its socket being closed (the
transport is built for a server that no longer has sockets, fails an assertion, and the
error is only logged in debug mode). A node that closes while a peer redials would leak
that socket. Here the accept happens in the selector's callback and the new socket is
given to its owner in the same call, so there is no moment when nobody owns it.

The listener needs an event loop with ``add_reader`` (any selector loop, uvloop): the
library is POSIX-only already, for its file locks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["Listener", "ip_family"]

logger = logging.getLogger("almost_raft.tcp")

# A burst of connections is taken in batches, so one readiness callback cannot hold the
# loop for long (asyncio's own servers take up to the backlog at a time).
_ACCEPTS_PER_CALL = 64
_BACKLOG = 128
# After an accept error (typically no file descriptors left), wait this long before
# trying again instead of spinning on a socket that stays readable.
_ACCEPT_RETRY_SECONDS = 1.0


class Listener:
    """Accepts connections on one address and passes each socket to ``on_connection``.

    ``on_connection`` runs inside the event loop's readiness callback and owns the socket
    from then on (non-blocking, and it must close it). Build one with :meth:`open`.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_connection: Callable[[socket.socket], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._sock = sock
        self._on_connection = on_connection
        self._loop = loop
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        host, port = sock.getsockname()[:2]
        self.address: tuple[str, int] = (str(host), int(port))
        loop.add_reader(sock.fileno(), self._accept)

    @classmethod
    async def open(
        cls, host: str, port: int, on_connection: Callable[[socket.socket], None]
    ) -> Listener:
        """Listen on the first address ``host`` resolves to; port 0 picks a free port.

        Raises:
            OSError: the name does not resolve or the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        family = ip_family(host)
        if family is not None:
            sockaddr: tuple[Any, ...] = (host, port)
            kind, proto = socket.SOCK_STREAM, 0
        else:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            # A node restarting on its port must not wait out the old connections'
            # TIME_WAIT; asyncio's servers set this too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            return cls(sock, on_connection, loop)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        """Stop accepting and close the listening socket. Idempotent.

        Connections already handed over are their owner's to close.
        """
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_CALL):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning(
                    "cannot accept on %s:%d (%s); retrying in %.0f s",
                    *self.address,
                    exc,
                    _ACCEPT_RETRY_SECONDS,
                )
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(_ACCEPT_RETRY_SECONDS, self._resume)
                return
            conn.setblocking(False)
            self._on_connection(conn)

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self._sock.fileno(), self._accept)


def ip_family(host: str) -> socket.AddressFamily | None:
    """The family of ``host`` if it is an IPv4 or IPv6 address; None for a name.

    An address needs no lookup; asyncio's own servers skip it too. getaddrinfo() would run
    in a worker thread and encode the host with the IDNA codec, whose import (stringprep,
    unicodedata) and thread stay with the node for its whole life: about 0.5 MiB.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None

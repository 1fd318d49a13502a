"""What the node's small servers share: listening, the bound address, closing."""

from __future__ import annotations

import abc
import asyncio
import ssl

__all__ = ["StreamServer"]


class StreamServer(abc.ABC):
    """An asyncio stream server that hands each connection to :meth:`_serve`.

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`address`).
        limit: the longest line or head a reader of a connection may buffer, in bytes.
        tls: a TLS server context, or ``None`` for plain TCP.
    """

    #: How the server is named in its errors.
    name = "server"

    def __init__(
        self, host: str, port: int, *, limit: int, tls: ssl.SSLContext | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._limit = limit
        self._tls = tls
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError(f"the {self.name} is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        """Begin listening."""
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, ssl=self._tls, limit=self._limit
        )

    async def close(self) -> None:
        """Stop listening and wait for open connections to finish; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    @abc.abstractmethod
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one connection."""

"""A tiny HTTP/1.1 server for ``GET /status`` and ``GET /metrics`` (and ``HEAD`` of each).

It answers one request per connection and closes it; requests are bounded in size and
time, so a slow or hostile client cannot hold the node's event loop or memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._stream_server import StreamServer

__all__ = ["StatusServer", "json_route"]

logger = logging.getLogger("almost_raft.http")

_MAX_HEAD_BYTES = 8192
_READ_TIMEOUT = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}

#: A status code, a content type and a body.
Answer = tuple[int, str, bytes]
Route = Callable[[], Answer]


class StatusServer(StreamServer):
    """Serves a fixed set of GET routes; HEAD answers as GET would, without the body.

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`address`).
        routes: path -> function returning (status code, content type, body).
    """

    name = "status server"

    def __init__(self, host: str, port: int, routes: Mapping[str, Route]) -> None:
        super().__init__(host, port, limit=_MAX_HEAD_BYTES)
        self._routes = dict(routes)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, (status, content_type, body) = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            # RFC 9110 9.3.2: HEAD gets GET's header fields, Content-Length included.
            writer.write(head.encode("ascii") + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            logger.exception("status request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[bytes, Answer]:
        """The request's method and the answer to it."""
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return b"", _text(400, "bad request\n")
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3:
            return b"", _text(400, "bad request line\n")
        method, target = parts[0], parts[1].decode("ascii", "replace").split("?", 1)[0]
        route = self._routes.get(target)
        if route is None:
            return method, _text(404, f"no such path; try {', '.join(sorted(self._routes))}\n")
        if method not in (b"GET", b"HEAD"):
            return method, _text(405, "only GET and HEAD\n")
        return method, route()


def json_route(produce: Callable[[], Any]) -> Route:
    """A route answering with ``produce()`` as indented JSON."""

    def route() -> tuple[int, str, bytes]:
        body = json.dumps(produce(), indent=2, sort_keys=True) + "\n"
        return 200, "application/json", body.encode()

    return route


def _text(status: int, text: str) -> Answer:
    return status, "text/plain; charset=utf-8", text.encode()

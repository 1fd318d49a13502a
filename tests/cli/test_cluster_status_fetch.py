"""``fetch_status`` reads a node's whole answer, however the network splits it."""

from __future__ import annotations

import asyncio
import json

import pytest

from almost_raft.cli._status import fetch_status
from helpers.cluster import run_async


class PieceServer:
    """Answers one request with ``pieces``, written apart so they arrive apart."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.done = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await asyncio.wait_for(self.done.wait(), 5.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            for piece in self.pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass  # the client stopped reading: what the size limit is for
        finally:
            writer.close()
            self.done.set()


def http_answer(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


@run_async
async def test_an_answer_that_arrives_in_pieces_is_read_whole() -> None:
    status = {"id": "a", "term": 3, "peers": {f"n{i}": {"address": "x"} for i in range(50)}}
    raw = http_answer(json.dumps(status).encode())
    async with PieceServer([raw[:40], raw[40:90], raw[90:]]) as port:
        assert await fetch_status("127.0.0.1", port, 5.0) == status


@run_async
async def test_an_answer_longer_than_the_limit_is_refused() -> None:
    async with PieceServer([http_answer(b" " * (1 << 20)), b"  "]) as port:
        with pytest.raises(ValueError, match="longer than"):
            await fetch_status("127.0.0.1", port, 5.0)

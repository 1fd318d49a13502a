"""The listening socket: an IP address is bound as it is; only a name is looked up."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from almost_raft.transport.tcp._listener import Listener
from helpers.cluster import run_async


def _refuse(conn: socket.socket) -> None:
    conn.close()


@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]
)
@run_async
async def test_an_ip_address_is_bound_without_a_lookup(
    host: str, family: socket.AddressFamily, monkeypatch: pytest.MonkeyPatch
) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def no_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"getaddrinfo{args} was called for an address")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_lookup)
    try:
        listener = await Listener.open(host, 0, _refuse)
    except OSError as exc:
        pytest.skip(f"cannot bind {host}: {exc}")
    try:
        assert listener.address[0] == host
        assert listener.address[1] > 0
        assert listener._sock.family == family
    finally:
        listener.close()


@run_async
async def test_a_host_name_is_looked_up() -> None:
    listener = await Listener.open("localhost", 0, _refuse)
    try:
        assert listener.address[1] > 0
        reader, writer = await asyncio.open_connection(*listener.address[:2])
        # The listener hands the socket over and _refuse closes it: the client sees EOF.
        assert await asyncio.wait_for(reader.read(), timeout=10.0) == b""
        writer.close()
        await writer.wait_closed()
    finally:
        listener.close()

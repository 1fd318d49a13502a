"""The admin endpoint: off unless configured, never open without the secret or a
certificate from the cluster's CA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from almost_raft import Election, InMemoryNetwork, TlsConfig
from almost_raft.cli._certs import make_certificates
from almost_raft.node import _admin
from almost_raft.node._admin import AdminServer, admin_proof
from almost_raft.node._cluster_config import ClusterConfig
from helpers.cluster import FAST, run_async

SECRET = b"s" * 32


async def ask(address: tuple[str, int], request: dict[str, Any], secret: bytes | None) -> Any:
    reader, writer = await asyncio.open_connection(*address)
    try:
        nonce = json.loads(await reader.readline())["nonce"]
        if secret is not None:
            request = {**request, "proof": admin_proof(secret, "test", nonce, request)}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        return json.loads(await reader.readline())
    finally:
        writer.close()
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def leader_with_endpoint(
    secret: bytes | None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Election, AdminServer]]:
    """A one-node cluster "a" that leads, with its admin endpoint on a free port."""
    election = Election("a", [], InMemoryNetwork().transport("a"), config=FAST)
    await election.start()
    server = AdminServer("127.0.0.1", 0, election, "test", secret, tls)
    await server.start()
    try:
        await election.wait_for_leader(timeout=10)
        yield election, server
    finally:
        await server.close()
        await election.close()


@run_async
async def test_a_request_without_the_secrets_proof_is_refused_and_changes_nothing() -> None:
    async with leader_with_endpoint(SECRET) as (election, server):
        for forged in (None, b"x" * 32):
            answer = await ask(server.address, {"op": "add", "node_id": "b"}, forged)
            assert answer["ok"] is False
            assert "secret" in answer["error"]
        assert server.refused == 2
        config = election.status().configuration
        assert config is not None
        assert config.ids == {"a"}
        # A proof covers the endpoint's fresh nonce: each request makes its own.
        listed = await ask(server.address, {"op": "list"}, SECRET)
        assert listed["ok"] is True
        assert [m["id"] for m in listed["configuration"]["members"]] == ["a"]
        added = await ask(server.address, {"op": "add", "node_id": "b", "voter": False}, SECRET)
        assert added["ok"] is True, added
        assert {m["id"]: m["voter"] for m in added["configuration"]["members"]} == {
            "a": True,
            "b": False,
        }


@run_async
async def test_adding_a_voter_that_never_comes_says_its_promotion_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # b is not running: it is added as a non-voter, and its promotion waits for it to
    # save the configuration and answer. The answer says so, not just "pending".
    monkeypatch.setattr(_admin, "COMMIT_TIMEOUT", 0.5)
    async with leader_with_endpoint(None) as (election, server):
        answer = await ask(server.address, {"op": "add", "node_id": "b"}, None)
        assert answer["ok"] is False
        assert answer["pending"] is True
        assert answer["error"].startswith(
            "b was added as a non-voter (configuration v2 committed); it will be promoted "
            "once it has saved the configuration and answers"
        ), answer
        members = answer["configuration"]["members"]
        assert {m["id"]: m["voter"] for m in members} == {"a": True, "b": False}
        assert election.status().change_pending


def test_the_admin_endpoint_is_off_unless_the_cluster_file_gives_an_address() -> None:
    text = """
cluster = "test"
state_dir = "state"
[nodes.a]
address = "127.0.0.1:7000"
[nodes.b]
address = "127.0.0.1:7001"
admin = "127.0.0.1:7101"
"""
    cluster = ClusterConfig.from_dict(tomllib.loads(text))
    assert cluster.nodes["a"].admin is None
    assert cluster.nodes["b"].admin == ("127.0.0.1", 7101)


@run_async
async def test_with_mutual_tls_the_endpoint_needs_a_cluster_certificate(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    make_certificates(tmp_path / "cluster", "test", ["a"])
    make_certificates(tmp_path / "rogue", "rogue", ["a"])
    ours = TlsConfig.from_files(
        ca=tmp_path / "cluster" / "ca.pem",
        cert=tmp_path / "cluster" / "a.pem",
        key=tmp_path / "cluster" / "a.key",
    )
    async with leader_with_endpoint(None, ours.server) as (election, server):
        host, port = server.address
        # Plain TCP gets no greeting: the TLS handshake fails and the node closes.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(json.dumps({"op": "add", "node_id": "b"}).encode() + b"\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        # TLS with a certificate from another CA is refused in the handshake.
        rogue = TlsConfig.from_files(
            ca=tmp_path / "cluster" / "ca.pem",
            cert=tmp_path / "rogue" / "a.pem",
            key=tmp_path / "rogue" / "a.key",
        )
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await ask_tls(server.address, {"op": "add", "node_id": "b"}, rogue.client)
        # A cluster certificate is let in.
        listed = await ask_tls(server.address, {"op": "list"}, ours.client)
        assert listed["ok"] is True
        config = election.status().configuration
        assert config is not None
        assert config.ids == {"a"}


async def ask_tls(
    address: tuple[str, int], request: dict[str, Any], context: ssl.SSLContext
) -> Any:
    reader, writer = await asyncio.open_connection(*address, ssl=context)
    try:
        async with asyncio.timeout(10):
            await reader.readline()
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        if not line:
            # TLS 1.3 tells a client its certificate was refused only by closing.
            raise ConnectionError("the endpoint closed the connection")
        return json.loads(line)
    finally:
        writer.close()

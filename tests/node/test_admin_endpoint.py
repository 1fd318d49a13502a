"""The admin endpoint: off unless configured, and never open without the secret."""

from __future__ import annotations

import asyncio
import json
import tomllib
from typing import Any

from almost_raft import Election, InMemoryNetwork
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


@run_async
async def test_a_request_without_the_secrets_proof_is_refused_and_changes_nothing() -> None:
    election = Election("a", [], InMemoryNetwork().transport("a"), config=FAST)
    await election.start()
    server = AdminServer("127.0.0.1", 0, election, "test", SECRET, None)
    await server.start()
    try:
        await election.wait_for_leader(timeout=10)
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
    finally:
        await server.close()
        await election.close()


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

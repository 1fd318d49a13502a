"""The admin endpoint: list, add and remove members of a running node's cluster.

Off unless the cluster file gives the node an ``admin`` address. One request per
connection, as lines of JSON::

    node   -> client   {"nonce": "<hex>"}
    client -> node     {"op": "list" | "add" | "remove", "node_id": ..., "address": ...,
                        "voter": true, "proof": "<hex>"}
    node   -> client   {"ok": true, "configuration": {...}, "leader": ...}
                       {"ok": false, "error": "...", "leader": ...}
                       {"ok": false, "pending": true, "error": "...",
                        "configuration": {...}, "leader": ...}

A change answers once it is committed. One that is not within :data:`COMMIT_TIMEOUT`
answers ``pending``, with the configuration in force and an error saying what it waits
for: a member added as a voter joins as a non-voter and is promoted only once it has
saved the configuration and answers the leader, so adding one that is not running
commits it as a non-voter and then waits.

Changing members is an administrative act, so it is never open to whoever can reach the
port when the cluster has a secret or mutual TLS. With a shared secret, ``proof`` is an
HMAC-SHA256 under it of the cluster id, the node's fresh nonce and the request, so a
recorded request proves nothing on a new connection; with mutual TLS the endpoint speaks
TLS and requires a certificate from the cluster's CA. A request that fails either check
is refused, logged and counted, and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import ssl
from typing import Any

from ..core._configuration import Configuration
from ..core._errors import AlmostRaftError, MembershipChangeError
from ..runtime._election import Election
from ._stream_server import StreamServer

__all__ = ["AdminServer", "admin_proof", "configuration_json"]

logger = logging.getLogger("almost_raft.admin")

_MAX_LINE_BYTES = 16 * 1024
_READ_TIMEOUT = 10.0
#: How long a change may take to commit before the endpoint answers that it is pending.
COMMIT_TIMEOUT = 30.0
_OPS = ("list", "add", "remove")


def admin_proof(secret: bytes, cluster_id: str, nonce: str, request: dict[str, Any]) -> str:
    """The proof a request carries in a cluster with a shared secret (hex)."""
    fields = {key: request.get(key) for key in ("op", "node_id", "address", "voter")}
    body = json.dumps(fields, sort_keys=True).encode()
    message = b"almost-raft admin\0" + cluster_id.encode() + b"\0" + nonce.encode() + b"\0" + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def configuration_json(config: Configuration | None) -> dict[str, Any] | None:
    """A configuration as the endpoint (and ``almost-raft status``) shows it."""
    if config is None:
        return None
    return {
        "version": config.version,
        "term": config.term,
        "members": [
            {"id": m.node_id, "voter": m.voter, "address": m.address} for m in config.members
        ],
    }


def _pending(op: str, node_id: str, voter: object, election: Election) -> str:
    """What a change that has not committed in time waits for, as the leader sees it."""
    status = election.status()
    config = status.configuration
    member = None if config is None else config.member(node_id)
    if (
        op == "add"
        and voter is not False
        and config is not None
        and member is not None
        and not member.voter
        and status.committed_version >= config.version
    ):
        return (
            f"{node_id} was added as a non-voter (configuration v{config.version} "
            f"committed); it will be promoted once it has saved the configuration and "
            f"answers, which it has not within {COMMIT_TIMEOUT:g}s: is it running, and "
            "can the leader reach it? No other change can be made meanwhile, except "
            f"removing {node_id}"
        )
    return f"{op} {node_id}: not committed within {COMMIT_TIMEOUT:g}s; still pending"


class AdminServer(StreamServer):
    """Serves the admin endpoint of one node.

    Args:
        host, port: where to listen.
        election: the node's election, which must lead for a change to be made.
        cluster_id: the cluster's id, part of every proof.
        secret: the cluster's shared secret, or ``None``.
        tls: the node's TLS server context (requiring client certificates), or ``None``.
    """

    name = "admin endpoint"

    def __init__(
        self,
        host: str,
        port: int,
        election: Election,
        cluster_id: str,
        secret: bytes | None,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(host, port, limit=_MAX_LINE_BYTES, tls=tls)
        self._election = election
        self._cluster_id = cluster_id
        self._secret = secret
        #: Requests refused for a missing or wrong proof.
        self.refused = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            nonce = secrets.token_hex(16)
            writer.write(json.dumps({"nonce": nonce}).encode() + b"\n")
            await writer.drain()
            answer = await self._answer(reader, nonce)
            answer.setdefault("leader", self._election.status().leader_id)
            writer.write(json.dumps(answer, sort_keys=True).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except Exception:
            logger.exception("admin request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, nonce: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                line = await reader.readline()
            request = json.loads(line)
        except (ValueError, asyncio.LimitOverrunError):
            return {"ok": False, "error": "the request must be one line of JSON"}
        if not isinstance(request, dict) or request.get("op") not in _OPS:
            return {"ok": False, "error": f"op must be one of {', '.join(_OPS)}"}
        if self._secret is not None:
            proof = request.get("proof")
            expected = admin_proof(self._secret, self._cluster_id, nonce, request)
            if not isinstance(proof, str) or not hmac.compare_digest(proof, expected):
                self.refused += 1
                logger.warning("admin request refused: it does not prove the cluster's secret")
                return {"ok": False, "error": "refused: the request must prove the secret"}
        election = self._election
        op = request["op"]
        node_id: Any = request.get("node_id")
        try:
            if op == "list":
                config = election.status().configuration
            elif op == "add":
                adding = election.add_member(
                    node_id, request.get("address"), voter=request.get("voter", True)
                )
                config = await asyncio.wait_for(adding, COMMIT_TIMEOUT)
            else:
                config = await asyncio.wait_for(election.remove_member(node_id), COMMIT_TIMEOUT)
        except TimeoutError:
            config = election.status().configuration
            return {
                "ok": False,
                "pending": True,
                "error": _pending(op, node_id, request.get("voter", True), election),
                "configuration": configuration_json(config),
            }
        except AlmostRaftError as exc:
            answer: dict[str, Any] = {"ok": False, "error": str(exc)}
            if isinstance(exc, MembershipChangeError) and exc.leader_id is not None:
                answer["leader"] = exc.leader_id
            return answer
        if op != "list" and config is not None:
            logger.info("admin: %s %s committed: %s", op, request.get("node_id"), config.describe())
        return {"ok": True, "configuration": configuration_json(config)}

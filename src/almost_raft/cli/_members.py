"""``almost-raft members``: list the configuration, or add or remove a member.

It talks to the admin endpoint of a node (``nodes.ID.admin`` in the cluster file; see
``node/_admin.py``), proving the cluster's secret or presenting that node's certificate
when the cluster has them. A change must be made at the leader: a node that does not
lead answers with the leader it knows, and the change is sent there instead.

Its arguments are declared in ``_parser`` with the other commands': the parser is built
by every ``almost-raft run`` too, and this module is imported only when the command runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError

if TYPE_CHECKING:
    import ssl

    from ..node._cluster_config import ClusterConfig

__all__ = ["run_members"]

# A node that does not lead names the leader; following that name more often than this
# means leadership is moving, and the operator should retry later.
_MAX_REDIRECTS = 3
# A live endpoint greets at once; a stopped process (SIGSTOP, a hung host) still completes
# the TCP handshake in its kernel but never greets. Waiting the whole --timeout on it would
# hold the command for every frozen node in turn, so the greeting has a short limit of its
# own and the next node is asked.
GREETING_TIMEOUT = 3.0


def run_members(args: SimpleNamespace) -> int:
    """Carry out ``almost-raft members``; return the exit status."""
    from ..node._cluster_config import ClusterConfig

    try:
        cluster = ClusterConfig.load(args.config)
        targets = _admin_nodes(cluster, args.node)
    except ConfigError as exc:
        print(f"almost-raft members: {exc}", file=sys.stderr)
        return 2
    request: dict[str, Any] = {"op": args.op}
    if args.op in ("add", "remove"):
        request["node_id"] = args.node_id
    if args.op == "add":
        request["address"] = args.address
        request["voter"] = not args.non_voter
    try:
        answer = asyncio.run(_ask_cluster(cluster, targets, request, args.timeout))
    except ConfigError as exc:
        print(f"almost-raft members: {exc}", file=sys.stderr)
        return 2
    if not answer.get("ok"):
        print(f"almost-raft members: {answer.get('error')}", file=sys.stderr)
        if answer.get("pending") and answer.get("configuration") is not None:
            # Part of the change may be in force (a member added, its promotion
            # waiting): show what is, so the operator need not guess.
            _print_configuration(answer)
        return 1
    _print_configuration(answer)
    return 0


def _admin_nodes(cluster: ClusterConfig, first: str | None) -> list[str]:
    nodes = [node_id for node_id, entry in cluster.nodes.items() if entry.admin is not None]
    if not nodes:
        raise ConfigError(
            f"{cluster.source}: nodes.ID.admin",
            None,
            'no node has an admin address; add one, e.g. admin = "127.0.0.1:7100", and '
            "restart that node",
        )
    if first is not None:
        if first not in nodes:
            raise ConfigError("--node", first, f"must be a node with an admin address: {nodes}")
        nodes.remove(first)
        nodes.insert(0, first)
    return nodes


async def _ask_cluster(
    cluster: ClusterConfig, targets: Sequence[str], request: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """Ask the first node that answers; follow its word to the leader for a change."""
    answer: dict[str, Any] = {"ok": False, "error": "no node with an admin address answered"}
    errors: list[str] = []
    for node_id in targets:
        answer = await _ask_or_explain(cluster, node_id, request, seconds)
        if "unreachable" in answer:
            errors.append(answer["error"])
            continue
        for _ in range(_MAX_REDIRECTS):
            leader = answer.get("leader")
            if answer.get("ok") or request["op"] == "list" or leader in (None, node_id):
                break
            entry = cluster.nodes.get(leader)
            if entry is None or entry.admin is None:
                answer["error"] = (
                    f"{answer.get('error')}; the leader {leader} has no admin address in "
                    f"{cluster.source}"
                )
                break
            node_id = leader
            answer = await _ask_or_explain(cluster, node_id, request, seconds)
        return answer
    if errors:
        answer["error"] = "no node's admin endpoint answered: " + "; ".join(errors)
    return answer


async def _ask_or_explain(
    cluster: ClusterConfig, node_id: str, request: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """One node's answer, or a failed answer saying why it could not be had."""
    try:
        return await _ask(cluster, node_id, request, seconds)
    except (OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return {"ok": False, "unreachable": True, "error": f"{node_id}: {reason}"}


async def _ask(
    cluster: ClusterConfig, node_id: str, request: dict[str, Any], seconds: float
) -> dict[str, Any]:
    from ..node._admin import admin_proof
    from ..node._cluster_config import format_host_port

    entry = cluster.nodes[node_id]
    assert entry.admin is not None
    host, port = entry.admin
    where = format_host_port(entry.admin)
    context: ssl.SSLContext | None = None
    files = cluster.security.tls.get(node_id)
    if files is not None:
        context = files.load(cluster.source, node_id).client
    secret = cluster.security.load_secret(cluster.source)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    greeted = False
    try:
        async with asyncio.timeout_at(min(deadline, loop.time() + GREETING_TIMEOUT)) as limit:
            try:
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
            except ConnectionRefusedError:
                raise ValueError(f"{where} refused the connection (is the node running?)") from None
            try:
                greeting_line = await reader.readline()
                if not greeting_line:
                    raise ValueError(f"{where} closed the connection before greeting")
                greeted = True
                # The answer to a change may take as long as its commit: the rest of
                # --timeout.
                limit.reschedule(deadline)
                greeting = json.loads(greeting_line)
                if secret is not None:
                    request = {
                        **request,
                        "proof": admin_proof(
                            secret, cluster.cluster_id, greeting["nonce"], request
                        ),
                    }
                writer.write(json.dumps(request).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        if greeted:
            raise ValueError(
                f"{where} took the request but gave no answer within {seconds:g} s "
                "(--timeout); the change may still be made: list the members to see"
            ) from None
        waited = min(seconds, GREETING_TIMEOUT)
        raise ValueError(
            f"{where} did not greet within {waited:g} s (is the process stopped or the "
            "host overloaded?)"
        ) from None
    if not line:
        raise ValueError(f"{where} closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


def _print_configuration(answer: dict[str, Any]) -> None:
    config = answer.get("configuration")
    if config is None:
        print("no configuration yet (the node has not started)")
        return
    print(
        f"configuration v{config['version']} (made in term {config['term']}), "
        f"leader {answer.get('leader') or 'unknown'}"
    )
    for member in config["members"]:
        role = "voter" if member["voter"] else "non-voter"
        print(f"  {member['id']:<24} {role:<10} {member['address'] or '-'}")

"""``almost-raft status``: ask every node's ``/status`` and print one table, then the
configuration the nodes hold (see ``_configuration_view``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from typing import Any, TextIO

from ..node._cluster_config import ClusterConfig, NodeEntry, format_host_port
from ._configuration_view import (
    HeldConfiguration,
    configuration_cell,
    configuration_lines,
    held_configuration,
    reference_configuration,
)

__all__ = ["NodeReport", "fetch_status", "gather_reports", "no_http_advice", "print_cluster_status"]

_MAX_BODY = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class NodeReport:
    """What one node said about itself, or why it could not be asked."""

    entry: NodeEntry
    status: dict[str, Any] | None
    error: str | None


async def fetch_status(host: str, port: int, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """GET ``/status`` from one node.

    Raises:
        OSError, TimeoutError, ValueError: unreachable, too slow, or not a status answer.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            # read(n) returns what has arrived so far; the answer ends when the node closes.
            raw = await reader.read(_MAX_BODY + 1)
            while chunk := await reader.read(_MAX_BODY + 1 - len(raw)):
                raw += chunk
            if len(raw) > _MAX_BODY:
                raise ValueError(f"the answer is longer than {_MAX_BODY} bytes")
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head.split(b"\r\n", 1)[0].decode("ascii", "replace") or "empty answer")
    status = json.loads(body)
    if not isinstance(status, dict):
        raise ValueError("the answer is not a JSON object")
    return status


def no_http_advice(cluster: ClusterConfig) -> str | None:
    """How to enable ``/status`` when no node of ``cluster`` has an ``http`` address."""
    if any(entry.http is not None for entry in cluster.nodes.values()):
        return None
    first = min(cluster.nodes)
    return (
        f"no node in {cluster.source} has an http address, so there is no /status to ask; "
        f'add http = "HOST:PORT" to each [nodes.ID] table (e.g. [nodes.{first}] '
        f'http = "127.0.0.1:8000") and restart the nodes'
    )


async def gather_reports(cluster: ClusterConfig, timeout: float) -> list[NodeReport]:  # noqa: ASYNC109
    """Ask every node with an ``http`` address at once."""

    async def ask(entry: NodeEntry) -> NodeReport:
        if entry.http is None:
            return NodeReport(
                entry, None, f'no http address: add http = "HOST:PORT" to [nodes.{entry.node_id}]'
            )
        try:
            return NodeReport(entry, await fetch_status(*entry.http, timeout), None)
        except TimeoutError:
            return NodeReport(entry, None, f"no answer within {timeout:g} s")
        except OSError as exc:
            # The HTTP column names the address; errno texts would name it again, differently.
            text = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            return NodeReport(entry, None, text.lower())
        except ValueError as exc:
            return NodeReport(entry, None, str(exc) or type(exc).__name__)

    return list(await asyncio.gather(*(ask(e) for _, e in sorted(cluster.nodes.items()))))


def print_cluster_status(reports: list[NodeReport], out: TextIO) -> bool:
    """Print the table and the configuration; return whether the reachable nodes agree
    on exactly one leader (a configuration that differs is shown, but does not count)."""
    leader_views: dict[str, dict[str, Any]] = {}
    held: dict[str, HeldConfiguration] = {}
    for report in reports:
        status = report.status
        if status is None:
            continue
        if status.get("role") == "leader":
            leader_views[report.entry.node_id] = status
        config = held_configuration(status)
        if config is not None:
            held[report.entry.node_id] = config
    # Whose configuration the section shows: the leader's, of the highest term if several.
    claimants = sorted(leader_views, key=lambda n: (_term(leader_views[n]), n), reverse=True)
    found = reference_configuration(held, claimants)
    reference = None if found is None else found[1]
    # The address asked is the node's http one: that is where a "refused" comes from.
    rows = [("ID", "HTTP", "REACHABLE", "ROLE", "TERM", "LEADER", "LAST CONTACT", "CONFIG")]
    for report in reports:
        node = report.entry.node_id
        http = report.entry.http
        address = "-" if http is None else format_host_port(http)
        status = report.status
        if status is None:
            rows.append((node, address, f"no: {report.error}", "-", "-", "-", "-", "-"))
            continue
        rows.append(
            (
                node,
                address,
                "yes",
                str(status.get("role")),
                str(status.get("term")),
                str(status.get("leader") or "-"),
                _last_contact(node, leader_views),
                configuration_cell(held.get(node), reference),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
    leaders = {(s.get("leader"), s.get("term")) for r in reports if (s := r.status) is not None}
    agreed = len(leaders) == 1 and next(iter(leaders))[0] is not None
    if agreed:
        leader, term = next(iter(leaders))
        print(f"\nall reachable nodes agree: {leader} leads term {term}", file=out)
    else:
        print("\nthe reachable nodes do not agree on one leader", file=out)
    print("", file=out)
    for line in configuration_lines(held, claimants):
        print(line, file=out)
    return agreed


def _term(status: dict[str, Any]) -> int:
    term = status.get("term")
    return term if isinstance(term, int) and not isinstance(term, bool) else -1


def _last_contact(node: str, leader_views: dict[str, dict[str, Any]]) -> str:
    """How long ago the leader last heard from ``node`` (``leader`` for the leader)."""
    if node in leader_views:
        return "leader"
    for view in leader_views.values():
        seconds = view.get("peers", {}).get(node, {}).get("last_heard_seconds")
        if isinstance(seconds, int | float):
            return f"{seconds * 1000:.0f} ms ago"
    return "-"

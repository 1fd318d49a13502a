"""The metrics of one node, read from its counters when they are asked for.

Nothing is updated on the election's hot path: the families are built from the
election's, the transport's and the leader command's plain counters at each scrape, as
plain values (:class:`._exposition.MetricFamily`). :func:`metrics_text` renders them for
``/metrics``; :class:`._collector.MetricsCollector` gives the same families to
prometheus-client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..core._state import NodeState
from ..runtime._election import Election
from ..transport.tcp._transport import TcpMetrics
from ._exposition import MetricFamily, render

if TYPE_CHECKING:
    from ._supervisor import CommandCounts

__all__ = ["metric_families", "metrics_text"]

_PREFIX = "almost_raft"


def metrics_text(
    election: Election,
    transport_metrics: Callable[[], TcpMetrics] | None,
    command_counts: Callable[[], CommandCounts] | None = None,
) -> bytes:
    """The node's metrics in the Prometheus text format (with the leader command's, if
    the node runs one)."""
    return render(metric_families(election, transport_metrics, command_counts))


def metric_families(
    election: Election,
    transport_metrics: Callable[[], TcpMetrics] | None,
    command_counts: Callable[[], CommandCounts] | None = None,
) -> Iterator[MetricFamily]:
    """The node's metric families, read now: the election's, then the transport's and
    the leader command's when given."""
    metrics = election.metrics()
    status = election.status()
    yield MetricFamily.single(f"{_PREFIX}_term", "gauge", "The node's current term.", metrics.term)
    yield MetricFamily(
        f"{_PREFIX}_role",
        "gauge",
        "1 for the role the node plays now, 0 otherwise.",
        "role",
        tuple((state.value, 1.0 if metrics.role is state else 0.0) for state in NodeState),
    )
    yield MetricFamily.single(
        f"{_PREFIX}_is_leader", "gauge", "1 while this node is leader.", float(status.is_leader)
    )
    yield MetricFamily.single(
        f"{_PREFIX}_leader_known",
        "gauge",
        "1 while this node knows a leader.",
        float(status.leader_id is not None),
    )
    yield MetricFamily.single(f"{_PREFIX}_peers", "gauge", "Voting peers.", len(status.peers))
    for name, help_text, value in (
        ("pre_votes_started", "Pre-vote rounds started.", metrics.pre_votes_started),
        (
            "elections_started",
            "Elections started (each raised the term).",
            metrics.elections_started,
        ),
        ("elections_won", "Elections won.", metrics.elections_won),
        (
            "leader_down_reports",
            "Times evidence that the leader's process was gone made this node campaign early.",
            metrics.leader_down_reports,
        ),
        (
            "early_pre_votes",
            "Times this node, first in line after its leader's connection ended, asked "
            "for pre-votes before the evidence of a crash.",
            metrics.early_pre_votes,
        ),
        (
            "handovers_received",
            "Times a leader handed leadership to this node.",
            metrics.handovers_received,
        ),
        ("leader_changes", "Changes of the leader this node knows.", metrics.leader_changes),
        ("state_saves", "Terms and votes made durable.", metrics.state_saves),
        ("sends_failed", "Sends whose transport call raised.", metrics.sends_failed),
        ("sends_timed_out", "Sends cut off after message_timeout.", metrics.sends_timed_out),
        ("inputs_dropped", "Peer messages dropped: too many waiting.", metrics.inputs_dropped),
    ):
        yield MetricFamily.single(f"{_PREFIX}_{name}", "counter", help_text, value)
    yield MetricFamily(
        f"{_PREFIX}_messages_ignored",
        "counter",
        "Peer messages the election ignored, by reason.",
        "reason",
        tuple(sorted(metrics.messages_dropped.items())),
    )
    if transport_metrics is not None:
        yield from _transport_families(transport_metrics())
    if command_counts is not None:
        yield from _command_families(command_counts())


def _command_families(counts: CommandCounts) -> Iterator[MetricFamily]:
    yield MetricFamily.single(
        f"{_PREFIX}_command_running",
        "gauge",
        "1 while the leader command runs.",
        float(counts.running),
    )
    for name, help_text, value in (
        ("command_starts", "Times the leader command was started.", counts.starts),
        (
            "command_lease_lapses",
            "Runs of the leader command that the watchdog stopped because the lease ran out "
            "before its renewal while this node went on leading (lost packets, a stall).",
            counts.lease_lapses,
        ),
        (
            "command_exits",
            "Runs of the leader command that ended by themselves while this node led.",
            counts.exits,
        ),
    ):
        yield MetricFamily.single(f"{_PREFIX}_{name}", "counter", help_text, value)


def _transport_families(tcp: TcpMetrics) -> Iterator[MetricFamily]:
    for direction in ("sent", "received"):
        counts = getattr(tcp, direction)
        yield MetricFamily(
            f"{_PREFIX}_messages_{direction}",
            "counter",
            f"Messages {direction}, by kind.",
            "kind",
            tuple(
                (field.name, getattr(counts, field.name)) for field in dataclasses.fields(counts)
            ),
        )
    dropped: list[tuple[str | None, float]] = []
    bad: list[tuple[str | None, float]] = []
    for field in dataclasses.fields(tcp):
        value = getattr(tcp, field.name)
        if field.name.startswith("dropped_"):
            dropped.append((field.name.removeprefix("dropped_"), value))
        elif field.name.startswith("bad_"):
            bad.append((field.name.removeprefix("bad_"), value))
        elif field.name == "handshakes_refused":
            bad.append(("handshake_refused", value))
    yield MetricFamily(
        f"{_PREFIX}_messages_dropped",
        "counter",
        "Outgoing messages dropped, by reason.",
        "reason",
        tuple(dropped),
    )
    yield MetricFamily(
        f"{_PREFIX}_bad_frames",
        "counter",
        "Incoming frames rejected, by reason.",
        "reason",
        tuple(bad),
    )
    for name in ("connects", "accepted"):
        if hasattr(tcp, name):
            yield MetricFamily.single(
                f"{_PREFIX}_tcp_{name}", "counter", f"TCP connections ({name}).", getattr(tcp, name)
            )

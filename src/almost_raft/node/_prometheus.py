"""Prometheus metrics for one node, read from its counters at scrape time.

Nothing is updated on the election's hot path: a custom collector reads the election's
and the transport's plain counters when ``/metrics`` is asked for, with prometheus-client
(a dependency of almost-raft).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..core._state import NodeState
from ..runtime._election import Election
from ..transport.tcp._transport import TcpMetrics

if TYPE_CHECKING:
    from ._supervisor import CommandCounts

__all__ = ["metrics_text"]

_PREFIX = "almost_raft"


def metrics_text(
    election: Election,
    transport_metrics: Callable[[], TcpMetrics] | None,
    command_counts: Callable[[], CommandCounts] | None = None,
) -> bytes:
    """The node's metrics in the Prometheus text format (with the leader command's, if
    the node runs one).

    Raises:
        ModuleNotFoundError: prometheus-client is missing from this installation (it is a
            dependency); the message says how to put it back.
    """
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "metrics need prometheus-client, a dependency of almost-raft that is missing "
            "here: pip install prometheus-client"
        ) from exc
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(election, transport_metrics, command_counts))
    data: bytes = generate_latest(registry)
    return data


class _Collector:
    def __init__(
        self,
        election: Election,
        transport_metrics: Callable[[], TcpMetrics] | None,
        command_counts: Callable[[], CommandCounts] | None,
    ) -> None:
        self._election = election
        self._transport_metrics = transport_metrics
        self._command_counts = command_counts

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        metrics = self._election.metrics()
        status = self._election.status()
        yield GaugeMetricFamily(f"{_PREFIX}_term", "The node's current term.", value=metrics.term)
        role = GaugeMetricFamily(
            f"{_PREFIX}_role", "1 for the role the node plays now, 0 otherwise.", labels=["role"]
        )
        for state in NodeState:
            role.add_metric([state.value], 1.0 if metrics.role is state else 0.0)
        yield role
        yield GaugeMetricFamily(
            f"{_PREFIX}_is_leader", "1 while this node is leader.", value=float(status.is_leader)
        )
        yield GaugeMetricFamily(
            f"{_PREFIX}_leader_known",
            "1 while this node knows a leader.",
            value=float(status.leader_id is not None),
        )
        yield GaugeMetricFamily(f"{_PREFIX}_peers", "Voting peers.", value=len(status.peers))
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
            yield CounterMetricFamily(f"{_PREFIX}_{name}", help_text, value=value)
        ignored = CounterMetricFamily(
            f"{_PREFIX}_messages_ignored",
            "Peer messages the election ignored, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(metrics.messages_dropped.items()):
            ignored.add_metric([reason], count)
        yield ignored
        if self._transport_metrics is not None:
            yield from _transport_families(self._transport_metrics())
        if self._command_counts is not None:
            yield from _command_families(self._command_counts())


def _command_families(counts: CommandCounts) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield GaugeMetricFamily(
        f"{_PREFIX}_command_running",
        "1 while the leader command runs.",
        value=float(counts.running),
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
        yield CounterMetricFamily(f"{_PREFIX}_{name}", help_text, value=value)


def _transport_families(tcp: TcpMetrics) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily

    for direction in ("sent", "received"):
        family = CounterMetricFamily(
            f"{_PREFIX}_messages_{direction}", f"Messages {direction}, by kind.", labels=["kind"]
        )
        for field in dataclasses.fields(getattr(tcp, direction)):
            family.add_metric([field.name], getattr(getattr(tcp, direction), field.name))
        yield family
    dropped = CounterMetricFamily(
        f"{_PREFIX}_messages_dropped", "Outgoing messages dropped, by reason.", labels=["reason"]
    )
    bad = CounterMetricFamily(
        f"{_PREFIX}_bad_frames", "Incoming frames rejected, by reason.", labels=["reason"]
    )
    for field in dataclasses.fields(tcp):
        value = getattr(tcp, field.name)
        if field.name.startswith("dropped_"):
            dropped.add_metric([field.name.removeprefix("dropped_")], value)
        elif field.name.startswith("bad_"):
            bad.add_metric([field.name.removeprefix("bad_")], value)
        elif field.name == "handshakes_refused":
            bad.add_metric(["handshake_refused"], value)
    yield dropped
    yield bad
    for name in ("connects", "accepted"):
        if hasattr(tcp, name):
            yield CounterMetricFamily(
                f"{_PREFIX}_tcp_{name}", f"TCP connections ({name}).", value=getattr(tcp, name)
            )

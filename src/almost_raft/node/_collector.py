"""The node's metric families for a prometheus-client registry of the caller's own.

A program that runs an :class:`~almost_raft.Election` inside itself, and already serves
``/metrics`` with prometheus-client, registers a :class:`MetricsCollector` there: its
scrape then carries the same families as an ``almost-raft run`` node's ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._prometheus import metric_families

if TYPE_CHECKING:
    from ..runtime._election import Election
    from ..transport.tcp._transport import TcpTransport

__all__ = ["MetricsCollector"]


class MetricsCollector:
    """A prometheus-client collector of one election's metrics, read at each scrape.

    Register it with ``registry.register(MetricsCollector(election, transport))``, or
    with ``prometheus_client.REGISTRY``. The families are those of ``/metrics`` (see the
    operations guide): the election's, and the TCP transport's when one is given.

    Args:
        election: the election whose counters are exported.
        transport: its :class:`~almost_raft.TcpTransport`, for the message and
            connection counters; None to leave those out.

    Raises:
        ModuleNotFoundError: prometheus-client is not installed (it is a dependency of
            almost-raft); the message says how to put it back.
    """

    def __init__(self, election: Election, transport: TcpTransport | None = None) -> None:
        try:
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "MetricsCollector needs prometheus-client, a dependency of almost-raft that "
                "is missing here: pip install prometheus-client"
            ) from exc
        self._election = election
        self._transport = transport
        self._kinds: dict[str, Any] = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}

    def collect(self) -> Iterator[Any]:
        """The families, read now (prometheus-client calls it at each scrape)."""
        transport = self._transport
        families = metric_families(
            self._election, None if transport is None else (lambda: transport.metrics)
        )
        for family in families:
            labels = [] if family.label is None else [family.label]
            exported = self._kinds[family.kind](family.name, family.help, labels=labels)
            for label_value, value in family.samples:
                exported.add_metric([] if label_value is None else [label_value], value)
            yield exported

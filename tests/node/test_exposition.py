"""The Prometheus text the node writes itself, read back by prometheus-client's parser,
and the same families through :class:`MetricsCollector` in a registry of one's own."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from almost_raft import Election, InMemoryNetwork, MetricsCollector, TcpTransport
from almost_raft.node._exposition import MetricFamily, render
from almost_raft.node._prometheus import metrics_text
from helpers.cluster import FAST, run_async


def _parsed(text: str) -> list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
    return [
        (
            family.name,
            family.type,
            family.documentation,
            [(sample.name, sample.labels, sample.value) for sample in family.samples],
        )
        for family in text_string_to_metric_families(text)
    ]


def test_help_and_label_values_are_escaped_as_the_format_says() -> None:
    awkward = 'a "quoted" back\\slash\nand a second line'
    families = [
        MetricFamily("t_odd", "counter", 'help with \\ and\na line "feed"', "why", ((awkward, 2),)),
        MetricFamily.single("t_plain", "gauge", "plain", 0.25),
    ]
    text = render(families).decode()
    assert text.endswith("\n")
    [odd, plain] = _parsed(text)
    assert odd == (
        "t_odd",
        "counter",
        'help with \\ and\na line "feed"',
        [("t_odd_total", {"why": awkward}, 2.0)],
    )
    assert plain == ("t_plain", "gauge", "plain", [("t_plain", {}, 0.25)])
    # Every sample stays on its own line: an unescaped line feed would split it.
    assert sum(line.startswith("t_odd_total") for line in text.splitlines()) == 1


def test_special_values_and_an_empty_family_are_written_as_prometheus_reads_them() -> None:
    families = [
        MetricFamily(
            "t_values",
            "gauge",
            "values",
            "which",
            (("nan", math.nan), ("up", math.inf), ("down", -math.inf), ("big", 1e20)),
        ),
        MetricFamily("t_none", "counter", "no samples yet", "reason"),
    ]
    [values, empty] = _parsed(render(families).decode())
    read = {labels["which"]: value for _, labels, value in values[3]}
    assert math.isnan(read["nan"])
    assert read["up"] == math.inf
    assert read["down"] == -math.inf
    assert read["big"] == 1e20
    assert empty == ("t_none", "counter", "no samples yet", [])


def test_names_with_colons_are_metric_names() -> None:
    assert MetricFamily.single("t:x_y", "gauge", "x", 1).sample_name == "t:x_y"


@pytest.mark.parametrize(
    "make",
    [
        lambda: MetricFamily.single("1bad", "gauge", "x", 1),
        lambda: MetricFamily.single("", "gauge", "x", 1),
        lambda: MetricFamily.single("t_é", "gauge", "x", 1),
        lambda: MetricFamily("t_x", "gauge", "x", "a:b", (("v", 1),)),
        lambda: MetricFamily("t_x", "gauge", "x", "bad-label", (("v", 1),)),
        lambda: MetricFamily("t_x", "gauge", "x", "__reserved", (("v", 1),)),
        lambda: MetricFamily("t_x", "gauge", "x", "kind", ((None, 1),)),
        lambda: MetricFamily("t_x", "gauge", "x", None, (("v", 1),)),
    ],
)
def test_a_family_prometheus_could_not_read_is_refused(make: object) -> None:
    with pytest.raises(ValueError, match=r"Prometheus|does not match"):
        make()  # type: ignore[operator]


@run_async
async def test_the_collector_gives_a_registry_exactly_what_metrics_serves() -> None:
    network = InMemoryNetwork()
    election = Election("a", [], network.transport("a"), config=FAST)
    # A transport that never starts: only its counters are read.
    tcp = TcpTransport(listen=("127.0.0.1", 0), peers={}, cluster_id="c")
    tcp.metrics.sent.heartbeat = 7
    tcp.metrics.bad_field = 2
    registry = CollectorRegistry()
    async with election:
        await election.wait_for_leader(timeout=10)
        registry.register(MetricsCollector(election, tcp))
        ours = metrics_text(election, lambda: tcp.metrics)
        theirs = generate_latest(registry)
        without = generate_latest(_registry_of(MetricsCollector(election)))
        assert without == metrics_text(election, None)
    assert ours == theirs
    assert "almost_raft_messages_sent_total" in ours.decode()
    parsed = {name: samples for name, _, _, samples in _parsed(ours.decode())}
    assert ("almost_raft_messages_sent_total", {"kind": "heartbeat"}, 7.0) in parsed[
        "almost_raft_messages_sent"
    ]
    assert ("almost_raft_bad_frames_total", {"reason": "field"}, 2.0) in parsed[
        "almost_raft_bad_frames"
    ]
    assert b"almost_raft_messages_sent" not in without


def _registry_of(collector: MetricsCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


@run_async
async def test_two_collectors_of_the_same_names_are_refused_by_a_registry() -> None:
    network = InMemoryNetwork()
    first = Election("a", [], network.transport("a"), config=FAST)
    second = Election("b", [], network.transport("b"), config=FAST)
    # As prometheus_client.REGISTRY does: a collector is read once when registered.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(MetricsCollector(first))
    # One registry cannot tell two elections' series apart; it says so at registration.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(MetricsCollector(second))

"""The cluster file: valid files parse, every bad field is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from almost_raft import ConfigError
from almost_raft.node._cluster_config import ClusterConfig, parse_host_port

GOOD = """
cluster = "jobs"
state_dir = "state"

[election]
election_timeout_ms = 150
election_timeout_max_ms = 300
heartbeat_interval_ms = 50

[nodes.a]
address = "127.0.0.1:7001"
http = "127.0.0.1:8001"

[nodes.b]
address = "[::1]:7002"
"""


def test_good_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(GOOD)
    config = ClusterConfig.load(path)
    assert config.cluster_id == "jobs"
    assert config.state_dir == str(tmp_path / "state")
    assert config.election.election_timeout_range == (0.15, 0.3)
    assert config.election.heartbeat_interval == 0.05
    assert config.nodes["a"].http == ("127.0.0.1", 8001)
    assert config.nodes["b"].address == ("::1", 7002)
    assert config.peers_of("a") == {"b": ("::1", 7002)}


def _base() -> dict[str, Any]:
    return {"cluster": "jobs", "nodes": {"a": {"address": "127.0.0.1:7001"}}}


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no cluster", {"nodes": {"a": {"address": "h:1"}}}, "cluster"),
    ("empty cluster", {**_base(), "cluster": ""}, "cluster"),
    ("no nodes", {"cluster": "x"}, "nodes"),
    ("unknown top field", {**_base(), "clsuter": "x"}, "clsuter"),
    ("address without port", {**_base(), "nodes": {"a": {"address": "h"}}}, "nodes.a.address"),
    ("port out of range", {**_base(), "nodes": {"a": {"address": "h:70000"}}}, "nodes.a.address"),
    ("address not a string", {**_base(), "nodes": {"a": {"address": 7}}}, "nodes.a.address"),
    ("node not a table", {**_base(), "nodes": {"a": "h:1"}}, "nodes.a"),
    ("unknown node field", {**_base(), "nodes": {"a": {"address": "h:1", "x": 1}}}, "nodes.a.x"),
    ("bad http", {**_base(), "nodes": {"a": {"address": "h:1", "http": "x"}}}, "nodes.a.http"),
    ("zero timeout", {**_base(), "election": {"election_timeout_ms": 0}}, "election_timeout_ms"),
    (
        "float timeout",
        {**_base(), "election": {"heartbeat_interval_ms": 1.5}},
        "heartbeat_interval",
    ),
    (
        "heartbeat too slow",
        {**_base(), "election": {"election_timeout_ms": 100, "heartbeat_interval_ms": 60}},
        "election.heartbeat_interval_ms",
    ),
    (
        "max below min",
        {**_base(), "election": {"election_timeout_ms": 300, "election_timeout_max_ms": 200}},
        "election.election_timeout_max_ms",
    ),
    ("unknown election field", {**_base(), "election": {"timeout": 1}}, "election.timeout"),
    (
        "clock drift too large",
        {**_base(), "election": {"max_clock_drift": 0.7}},
        "election.max_clock_drift",
    ),
    ("bad state_dir", {**_base(), "state_dir": 3}, "state_dir"),
]


@pytest.mark.parametrize(
    ("raw", "field"), [(raw, field) for _, raw, field in BAD], ids=[name for name, _, _ in BAD]
)
def test_bad_field_is_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_dict(raw)
    assert field in info.value.field
    assert field.split(".")[-1] in str(info.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('cluster = "x"\n[nodes.a]\naddress = "nope"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: nodes\.a\.address"):
        ClusterConfig.load(path)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        ClusterConfig.load(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("cluster = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ClusterConfig.load(broken)


def test_unknown_id_lists_members(tmp_path: Path) -> None:
    config = ClusterConfig.from_dict(_base())
    with pytest.raises(ConfigError, match="members are: a"):
        config.entry("z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:0", ("::1", 0)), ("host:65535", ("host", 65535))],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port("f", text) == expected


def test_leader_down_delay_can_be_set_or_turned_off() -> None:
    config = ClusterConfig.from_dict({**_base(), "election": {"leader_down_delay_ms": 0}})
    assert config.election.leader_down_delay == 0
    config = ClusterConfig.from_dict({**_base(), "election": {"leader_down_delay_ms": 35}})
    assert config.election.leader_down_delay == 0.035
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_dict({**_base(), "election": {"leader_down_delay_ms": -1}})
    assert info.value.field == "election.leader_down_delay_ms"


def test_the_clock_drift_bound_can_be_set() -> None:
    config = ClusterConfig.from_dict({**_base(), "election": {"max_clock_drift": 0.05}})
    assert config.election.max_clock_drift == 0.05
    assert ClusterConfig.from_dict(_base()).election.max_clock_drift == 0.01


def test_a_short_timeout_that_clashes_with_a_default_names_the_timeout() -> None:
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_dict({**_base(), "election": {"election_timeout_ms": 100}})
    assert info.value.field == "election.election_timeout_ms"
    assert "heartbeat_interval" in str(info.value)

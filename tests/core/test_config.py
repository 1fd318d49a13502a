"""ElectionConfig: every bad value is refused with a ConfigError naming its field."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from almost_raft import ConfigError, ElectionConfig

BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"election_timeout": 0}, "election_timeout"),
    ({"election_timeout": -1.0}, "election_timeout"),
    ({"election_timeout": math.nan}, "election_timeout"),
    ({"election_timeout": math.inf}, "election_timeout"),
    ({"election_timeout": True}, "election_timeout"),
    ({"election_timeout": "1"}, "election_timeout"),
    ({"election_timeout": None}, "election_timeout"),
    ({"heartbeat_interval": 0.0}, "heartbeat_interval"),
    ({"heartbeat_interval": -0.1}, "heartbeat_interval"),
    ({"heartbeat_interval": 0.6}, "heartbeat_interval"),
    ({"election_timeout": 0.1}, "heartbeat_interval"),
    ({"message_timeout": 0}, "message_timeout"),
    ({"message_timeout": math.inf}, "message_timeout"),
    ({"message_timeout": False}, "message_timeout"),
    ({"election_timeout_max": 1.0}, "election_timeout_max"),
    ({"election_timeout_max": 0.5}, "election_timeout_max"),
    ({"election_timeout_max": -3.0}, "election_timeout_max"),
    ({"election_timeout_max": math.nan}, "election_timeout_max"),
    ({"min_peers": -1}, "min_peers"),
    ({"min_peers": 1.5}, "min_peers"),
    ({"min_peers": True}, "min_peers"),
    ({"min_peers": "2"}, "min_peers"),
    ({"max_nodes": 0}, "max_nodes"),
    ({"max_nodes": 2.0}, "max_nodes"),
    ({"max_nodes": False}, "max_nodes"),
    ({"min_peers": 3, "max_nodes": 3}, "max_nodes"),
    ({"pre_vote": 1}, "pre_vote"),
    ({"pre_vote": "yes"}, "pre_vote"),
    ({"check_quorum": None}, "check_quorum"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_CONFIGS, ids=[repr(k) for k, _ in BAD_CONFIGS])
def test_bad_config_names_its_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ElectionConfig(**kwargs)
    assert info.value.field == field
    assert info.value.value is kwargs.get(field, info.value.value)
    message = str(info.value)
    assert field in message
    assert "must" in message


BAD_MILLISECONDS: list[tuple[dict[str, Any], str]] = [
    ({"election_timeout": 0, "heartbeat_interval": 100, "message_timeout": 20}, "election_timeout"),
    (
        {"election_timeout": 1000, "heartbeat_interval": 1.5, "message_timeout": 20},
        "heartbeat_interval",
    ),
    (
        {"election_timeout": 1000, "heartbeat_interval": 100, "message_timeout": -5},
        "message_timeout",
    ),
    (
        {"election_timeout": 1000, "heartbeat_interval": 600, "message_timeout": 20},
        "heartbeat_interval",
    ),
    (
        {
            "election_timeout": 5000,
            "heartbeat_interval": 1000,
            "message_timeout": 20,
            "min_peers": 5,
            "max_nodes": 5,
        },
        "max_nodes",
    ),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_MILLISECONDS)
def test_bad_milliseconds_name_their_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ElectionConfig.from_milliseconds(**kwargs)
    assert info.value.field == field


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="election_timeout"):
        ElectionConfig(election_timeout=-1)


def test_defaults_are_valid() -> None:
    config = ElectionConfig()
    assert config.election_timeout_range == (1.0, 2.0)
    assert config.pre_vote
    assert config.check_quorum


def test_election_timeout_range_uses_the_maximum_when_given() -> None:
    assert ElectionConfig(
        election_timeout=0.3, election_timeout_max=0.45
    ).election_timeout_range == (
        0.3,
        0.45,
    )


def test_from_milliseconds_converts_to_seconds() -> None:
    # The seed README's numbers: heartbeat 1000ms, message timeout 20ms, timeout 5000ms.
    config = ElectionConfig.from_milliseconds(
        election_timeout=5000, heartbeat_interval=1000, message_timeout=20, min_peers=3, max_nodes=5
    )
    assert (config.election_timeout, config.heartbeat_interval, config.message_timeout) == (
        5.0,
        1.0,
        0.02,
    )
    assert (config.min_peers, config.max_nodes) == (3, 5)


def test_config_is_immutable() -> None:
    config = ElectionConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.election_timeout = 2.0  # type: ignore[misc]


def test_heartbeat_of_exactly_half_the_timeout_is_allowed() -> None:
    assert ElectionConfig(election_timeout=1.0, heartbeat_interval=0.5).heartbeat_interval == 0.5

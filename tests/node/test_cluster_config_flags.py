"""The cluster file's ``pre_vote`` and ``check_quorum`` switches in ``[election]``."""

from __future__ import annotations

from typing import Any

import pytest

from almost_raft import ConfigError
from almost_raft.node._cluster_config import ClusterConfig


def parse(election: dict[str, Any]) -> ClusterConfig:
    return ClusterConfig.from_dict(
        {"cluster": "c", "nodes": {"a": {"address": "127.0.0.1:7000"}}, "election": election}
    )


def test_both_protections_are_on_unless_the_file_turns_them_off() -> None:
    config = parse({}).election
    assert (config.pre_vote, config.check_quorum) == (True, True)


@pytest.mark.parametrize("pre_vote", [True, False])
@pytest.mark.parametrize("check_quorum", [True, False])
def test_each_switch_reaches_the_election_config(pre_vote: bool, check_quorum: bool) -> None:
    config = parse({"pre_vote": pre_vote, "check_quorum": check_quorum}).election
    assert (config.pre_vote, config.check_quorum) == (pre_vote, check_quorum)


@pytest.mark.parametrize("key", ["pre_vote", "check_quorum"])
@pytest.mark.parametrize("value", [1, 0, "false", "yes"])
def test_a_switch_must_be_a_toml_boolean(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({key: value})
    assert caught.value.field == f"election.{key}"
    assert caught.value.value == value
    assert "true or false" in caught.value.fix


def test_a_short_timeout_gets_a_proportionate_leader_down_delay() -> None:
    # Without leader_down_delay_ms, the turns scale down with a short election timeout.
    election = parse({"election_timeout_ms": 20, "heartbeat_interval_ms": 5}).election
    assert election.leader_down_step == pytest.approx(0.004)
    assert parse({}).election.leader_down_step == 0.03


def test_a_leader_down_delay_not_below_the_timeout_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"election_timeout_ms": 20, "heartbeat_interval_ms": 5, "leader_down_delay_ms": 20})
    assert caught.value.field == "election.leader_down_delay_ms"
    assert caught.value.value == 20

"""The configuration record and its change rules, on their own and through the core."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import pytest

from almost_raft import (
    ConfigError,
    Configuration,
    ElectionConfig,
    ElectionCore,
    HardState,
    Member,
    MembershipChangeError,
    RequestVoteResponse,
)
from almost_raft.core._configuration import (
    MAX_CONFIGURATION_BYTES,
    MAX_MEMBERS,
    bootstrap_configuration,
    check_add,
    check_remove,
    members_bytes,
)

ABC = bootstrap_configuration("a", ["b", "c"])


def leader(peers: tuple[str, ...] = ("b", "c")) -> tuple[ElectionCore, float]:
    core = ElectionCore("a", peers, ElectionConfig(pre_vote=False), random.Random(1), 0.0)
    core.tick(core.next_deadline)
    now = core.next_deadline - 0.5
    for peer in peers[: len(peers) // 2]:
        core.receive(RequestVoteResponse(1, peer, True), now)
    return core, now


def test_a_record_orders_by_term_then_version_like_a_raft_log() -> None:
    older = Configuration(9, 1, ABC.members)
    newer = Configuration(2, 2, ABC.members)
    assert newer.key > older.key
    assert ABC.voters == {"a", "b", "c"}
    assert ABC.with_member(Member("d", False), 3).voters == ABC.voters
    assert ABC.without("c", 3).ids == {"a", "b"}


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ((Member("b"), Member("a")), "sorted"),
        ((Member("a"), Member("a")), "each id once"),
        (tuple(Member(f"n{i:02}") for i in range(MAX_MEMBERS + 1)), "at most"),
    ],
)
def test_a_record_that_breaks_its_rules_cannot_be_built(
    members: tuple[Member, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Configuration(1, 1, members)


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("node_id", lambda: Member("")),
        ("address", lambda: Member("a", address="")),
        ("voter", lambda: Member("a", voter=1)),  # type: ignore[arg-type]
    ],
)
def test_a_bad_member_names_the_field(field: str, build: Callable[[], Member]) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_an_address_another_member_uses_is_refused_and_an_existing_member_is_a_no_op() -> None:
    config = Configuration(1, 1, (Member("a", True, "h:1"), Member("b", True, "h:2")))
    with pytest.raises(ConfigError) as info:
        check_add(config, Member("c", True, "h:2"))
    assert info.value.field == "address"
    assert "member b" in str(info.value)
    assert check_add(config, Member("a", True, "h:1")) is False
    assert check_add(config, Member("a")) is False
    with pytest.raises(ConfigError, match="already a member"):
        check_add(config, Member("a", True, "h:9"))


def test_removing_the_last_voter_or_a_stranger_is_refused() -> None:
    only = bootstrap_configuration("a", [])
    with pytest.raises(ConfigError, match="only voter"):
        check_remove(only, "a")
    with pytest.raises(ConfigError, match="not a member"):
        check_remove(ABC, "x")


def test_a_refused_change_changes_nothing_in_the_core() -> None:
    core, now = leader()
    before = core.configuration
    with pytest.raises(ConfigError):
        core.remove_member("x", now)
    with pytest.raises(ConfigError):
        core.add_member(Member("b", True, "elsewhere:1"), now)
    assert core.configuration is before
    follower = ElectionCore("b", ["a", "c"], ElectionConfig(), random.Random(2), 0.0)
    with pytest.raises(MembershipChangeError, match="not the leader"):
        follower.add_member(Member("d"), 0.0)


def test_a_saved_configuration_is_followed_and_a_differing_peer_list_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saved = Configuration(4, 2, (Member("a"), Member("b"), Member("d")))
    with caplog.at_level(logging.WARNING, logger="almost_raft.core"):
        core = ElectionCore(
            "a", ["b", "c"], ElectionConfig(), random.Random(1), 0.0, HardState(2, None, saved)
        )
    assert core.configuration is saved
    assert core.peers == {"b", "d"}
    [record] = caplog.records
    assert "differs from the members given at start" in record.getMessage()
    assert "following the saved one" in record.getMessage()


def test_a_fifteen_node_cluster_starts_with_every_node_a_voter() -> None:
    ids = [f"n{i}" for i in range(15)]
    config = bootstrap_configuration(
        "n0", ids[1:], {i: f"127.0.0.1:{7000 + n}" for n, i in enumerate(ids)}
    )
    assert config.voters == frozenset(ids)


def test_members_that_would_not_fit_the_state_file_are_refused_by_name() -> None:
    long_ids = [f"a-node-with-a-rather-long-name-{i:03}" for i in range(60)]
    with pytest.raises(ConfigError) as refused:
        bootstrap_configuration(long_ids[0], long_ids[1:])
    assert refused.value.field == "peers"
    grown = bootstrap_configuration(long_ids[0], long_ids[1:30])
    refusals = []
    for node_id in long_ids[30:]:
        member = Member(node_id, False)
        try:
            check_add(grown, member)
        except ConfigError as error:
            refusals.append(error)
            continue
        grown = grown.with_member(member, 1)
    assert refusals
    assert {error.field for error in refusals} == {"node_id"}
    assert len(grown.members) < len(long_ids)
    assert members_bytes(grown.members) <= MAX_CONFIGURATION_BYTES

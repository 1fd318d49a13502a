"""The lease arithmetic alone: promises, rounds and the stretch of early votes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from almost_raft import ConfigError, ElectionConfig
from almost_raft.core._lease import Lease, LeaseKeeper, Promise, stretched

VOTERS = ("a", "b", "c")


def test_a_lease_counts_from_the_send_time_of_the_round_a_majority_answered() -> None:
    keeper = LeaseKeeper(term=3, start=0.0)
    first = keeper.send_round("a", 1.0, horizon=1.0)
    second = keeper.send_round("a", 1.1, horizon=1.0)
    # The answer to the first round arrives after the second round left: it still counts
    # from 1.0, when the round it answers was sent.
    keeper.answered("b", first)
    assert keeper.until(VOTERS, 0.5) == pytest.approx(1.5)
    keeper.answered("c", second)
    assert keeper.until(VOTERS, 0.5) == pytest.approx(1.6)


def test_a_late_answer_to_an_old_round_never_shortens_the_lease() -> None:
    keeper = LeaseKeeper(term=1, start=0.0)
    old = keeper.send_round("a", 1.0, horizon=1.0)
    new = keeper.send_round("a", 1.2, horizon=1.0)
    keeper.answered("b", new)
    keeper.answered("b", old)
    assert keeper.until(VOTERS, 0.5) == pytest.approx(1.7)


def test_an_unknown_or_forgotten_round_counts_nothing() -> None:
    keeper = LeaseKeeper(term=1, start=0.0)
    old = keeper.send_round("a", 0.0, horizon=1.0)
    keeper.send_round("a", 2.0, horizon=1.0)  # forgets the round sent at 0.0
    keeper.answered("b", old)
    keeper.answered("c", 99)
    assert keeper.until(VOTERS, 0.5) == -math.inf


def test_without_a_majority_there_is_no_lease() -> None:
    keeper = LeaseKeeper(term=1, start=0.0)
    keeper.send_round("a", 1.0, horizon=1.0)
    lease = keeper.lease(("a", "b", "c", "d", "e"), 0.5)
    assert not lease.exclusive_at(1.0)


# One step of a leader's life: a round sent ("round"), an answer from a node to the
# round numbered so many rounds back ("answer", node, back), or a change of voters.
_STEPS = st.lists(
    st.one_of(
        st.just(("round",)),
        st.tuples(st.just("answer"), st.sampled_from("abcdefg"), st.integers(0, 4)),
        st.tuples(st.just("voters"), st.sets(st.sampled_from("abcdefg"), max_size=7)),
    ),
    max_size=60,
)


@given(_STEPS)
def test_a_lease_recomputed_only_when_stale_is_the_lease_recomputed_every_time(
    steps: list[tuple[object, ...]],
) -> None:
    # The keeper asks for a new computation only once a majority may have moved; the
    # leader computes nothing otherwise, so a lease it skipped must equal one computed.
    keeper = LeaseKeeper(term=1, start=0.0)
    voters: tuple[str, ...] = VOTERS
    now = 0.0
    kept = keeper.lease(voters, 0.5)
    for step in steps:
        if step[0] == "round":
            now += 0.05
            keeper.send_round("a", now, horizon=0.15)
        elif step[0] == "answer":
            node, back = step[1], step[2]
            assert isinstance(node, str)
            assert isinstance(back, int)
            keeper.answered(node, keeper.current_round - back)
        else:
            members = step[1]
            assert isinstance(members, set)
            voters = tuple(sorted(members))
            kept = keeper.lease(voters, 0.5)
        if keeper.stale:
            kept = keeper.lease(voters, 0.5)
        assert kept.until == keeper.until(voters, 0.5)


def test_a_lease_is_exclusive_from_its_start_until_its_end() -> None:
    lease = Lease(term=2, start=1.0, until=2.0)
    assert [lease.exclusive_at(t) for t in (0.99, 1.0, 1.99, 2.0)] == [
        False,
        True,
        True,
        False,
    ]


def test_a_promise_runs_for_its_duration_after_the_last_heartbeat() -> None:
    promise = Promise()
    promise.made(4, 1.0, 1.0)
    promise.made(4, 1.5, 1.0)
    assert promise.left(2.0) == pytest.approx(0.5)
    assert promise.left(2.6) == 0.0


def test_a_hand_over_waives_only_the_promise_made_to_the_leader_handing_over() -> None:
    promise = Promise()
    promise.made(4, 1.0, 1.0)
    promise.made(5, 1.2, 1.0)
    # The leader of term 5 hands over: what was promised to it no longer binds, but the
    # promise to term 4's leader, which may still hold a lease, does.
    assert promise.left(1.5, handed_over_by=5) == pytest.approx(0.5)
    assert promise.left(1.5, handed_over_by=4) == pytest.approx(0.7)
    assert promise.left(2.1, handed_over_by=5) == 0.0


def test_a_restarted_node_keeps_a_promise_it_may_have_made_before_the_crash() -> None:
    promise = Promise()
    promise.restarted(10.0, 1.0)
    assert promise.left(10.4) == pytest.approx(0.6)
    # No hand-over waives it: the leader it was made to is unknown.
    assert promise.left(10.4, handed_over_by=-1) == pytest.approx(0.6)


def test_a_remainder_on_another_clock_is_stretched_by_the_drift_bound() -> None:
    assert stretched(0.5, 0.2) == pytest.approx(0.625)
    assert stretched(0.0, 0.2) == 0.0


def test_the_lease_is_shorter_than_the_promise_by_the_drift_and_the_margin() -> None:
    config = ElectionConfig(election_timeout=1.0, max_clock_drift=0.1)
    assert config.lease_duration == pytest.approx(1.0 * 0.9 - config.lease_margin)
    assert 0 < config.lease_margin <= 0.05


@pytest.mark.parametrize("value", [-0.01, 0.5, 1.0, math.nan, True, "0.01"])
def test_max_clock_drift_is_checked(value: object) -> None:
    with pytest.raises(ConfigError, match="max_clock_drift"):
        ElectionConfig(max_clock_drift=value)  # type: ignore[arg-type]

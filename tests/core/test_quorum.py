"""Majority arithmetic against a dumb oracle that enumerates what the pending voters could do."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from almost_raft.core._quorum import (
    VoteResult,
    majority,
    quorum_heard_since,
    vote_result,
)

IDS = st.sampled_from([f"n{i}" for i in range(9)])
VOTERS = st.frozensets(IDS, max_size=9)
# Answers may come from ids that are not voters (removed members, forged senders).
VOTES = st.dictionaries(IDS | st.sampled_from(["stranger", "x"]), st.booleans(), max_size=11)


def oracle_vote_result(voters: frozenset[str], votes: dict[str, bool]) -> VoteResult:
    """Try every way the voters who have not answered could still answer."""
    answered = {v: votes[v] for v in voters if v in votes}
    pending = sorted(voters - answered.keys())
    outcomes = set()
    for answers in itertools.product([True, False], repeat=len(pending)):
        final = {**answered, **dict(zip(pending, answers, strict=True))}
        outcomes.add(sum(final.values()) * 2 > len(voters))
    if outcomes == {True}:
        return VoteResult.WON
    if outcomes == {False}:
        return VoteResult.LOST
    return VoteResult.PENDING


@given(VOTERS, VOTES)
def test_vote_result_matches_the_oracle(voters: frozenset[str], votes: dict[str, bool]) -> None:
    assert vote_result(voters, votes) is oracle_vote_result(voters, votes)


@given(VOTERS, VOTES)
def test_answers_from_non_voters_never_change_the_result(
    voters: frozenset[str], votes: dict[str, bool]
) -> None:
    only_voters = {k: v for k, v in votes.items() if k in voters}
    assert vote_result(voters, votes) is vote_result(voters, only_voters)


@given(st.integers(min_value=1, max_value=1000))
def test_two_majorities_always_overlap(n: int) -> None:
    assert 2 * majority(n) > n
    assert 2 * (majority(n) - 1) <= n


def test_small_clusters() -> None:
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    assert vote_result({"a"}, {"a": True}) is VoteResult.WON
    assert vote_result({"a", "b"}, {"a": True}) is VoteResult.PENDING
    assert vote_result({"a", "b"}, {"a": True, "b": False}) is VoteResult.LOST
    assert vote_result({"a", "b", "c", "d"}, {"a": True, "b": True, "c": False, "d": False}) is (
        VoteResult.LOST
    )


HEARD_AT = st.dictionaries(
    IDS | st.just("stranger"), st.floats(-100, 100, allow_nan=False), max_size=11
)


@given(VOTERS, HEARD_AT, st.floats(-100, 100, allow_nan=False))
def test_quorum_heard_since_matches_the_oracle(
    voters: frozenset[str], heard_at: dict[str, float], cutoff: float
) -> None:
    # A majority was heard at or after ``cutoff`` exactly when ``cutoff`` is not later than
    # quorum_heard_since; that is the whole contract.
    heard_after = {v for v in voters if heard_at.get(v, -math.inf) >= cutoff}
    expected = len(voters & heard_after) * 2 > len(voters)
    assert (quorum_heard_since(voters, heard_at) >= cutoff) == expected


def test_quorum_heard_since_small_cases() -> None:
    assert quorum_heard_since({"a"}, {"a": 5.0}) == 5.0
    assert quorum_heard_since({"a", "b", "c"}, {"a": 9.0, "b": 3.0, "c": 1.0}) == 3.0
    assert quorum_heard_since({"a", "b", "c"}, {"a": 9.0, "x": 8.0}) == -math.inf
    assert quorum_heard_since(set(), {}) == -math.inf

"""Majority arithmetic, free of any election state (etcd keeps the same in ``quorum/``)."""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Mapping

__all__ = ["VoteResult", "majority", "quorum_heard_since", "vote_result"]


class VoteResult(enum.Enum):
    """Where a vote stands: not decided yet, won, or impossible to win."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voter_count: int) -> int:
    """The smallest number of voters that is more than half of ``voter_count``."""
    return voter_count // 2 + 1


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    """Decide a vote from each voter's answer (``True`` granted, ``False`` refused).

    Answers from ids outside ``voters`` do not count, and each voter counts once, since
    ``votes`` holds one answer per voter.
    """
    granted = refused = 0
    for voter in voters:
        answer = votes.get(voter)
        if answer is True:
            granted += 1
        elif answer is False:
            refused += 1
    needed = majority(len(voters))
    if granted >= needed:
        return VoteResult.WON
    if len(voters) - refused < needed:
        return VoteResult.LOST
    return VoteResult.PENDING


def quorum_heard_since(voters: Collection[str], heard_at: Mapping[str, float]) -> float:
    """The latest time ``t`` such that a majority of ``voters`` was heard from at ``t`` or later.

    ``heard_at`` maps a voter to when it was last heard from; a voter missing from it was
    never heard from. Entries for ids outside ``voters`` do not count. With no voters the
    answer is ``-inf``.
    """
    # A list rather than a generator: a leader asks this on every answer it gets.
    get = heard_at.get
    times = [get(voter, _NEVER) for voter in voters]
    if not times:
        return _NEVER
    times.sort(reverse=True)
    # majority(n) - 1
    return times[len(times) // 2]


_NEVER = -math.inf

"""Cores set up in a known state, for tests that step one core by hand."""

from __future__ import annotations

import random

from almost_raft import ElectionConfig, ElectionCore, NodeState, RequestVoteResponse


def leader_of_three(config: ElectionConfig) -> ElectionCore:
    """Node ``a`` of ``a, b, c``, elected leader of term 1 with ``b``'s vote."""
    core = ElectionCore("a", ["b", "c"], config, random.Random(1), 0.0)
    core.tick(core.next_deadline)  # pre-vote
    now = core.next_deadline - 0.5
    core.receive(RequestVoteResponse(1, "b", granted=True, pre_vote=True), now)
    core.receive(RequestVoteResponse(1, "b", granted=True), now)
    assert core.role is NodeState.LEADER
    return core

"""Stepping down: the leader stops leading and another node wins the next election."""

from __future__ import annotations

import random

from almost_raft import (
    ElectionConfig,
    ElectionCore,
    HeartBeat,
    NodeState,
    RequestVoteResponse,
)
from helpers_async import Cluster, run_async, wait_until

CONFIG = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1)


def _leader_of_three() -> ElectionCore:
    core = ElectionCore("a", ["b", "c"], CONFIG, random.Random(1), 0.0)
    core.tick(core.next_deadline)  # pre-vote
    now = core.next_deadline - 0.5
    core.receive(RequestVoteResponse(1, "b", granted=True, pre_vote=True), now)
    core.receive(RequestVoteResponse(1, "b", granted=True), now)
    assert core.role is NodeState.LEADER
    return core


def test_step_down_reports_no_leader_and_waits_out_the_next_election() -> None:
    core = _leader_of_three()
    now = 5.0
    output = core.step_down(now)
    assert core.role is NodeState.FOLLOWER
    assert output.leader_change is not None
    assert output.leader_change.leader_id is None
    assert core.term == 1
    low, high = CONFIG.election_timeout_range
    # Longer than any other node's timer, so they campaign first.
    assert output.next_deadline >= now + high + low


def test_step_down_on_a_follower_does_nothing() -> None:
    core = ElectionCore("a", ["b", "c"], CONFIG, random.Random(1), 0.0)
    core.receive(HeartBeat(3, "b"), 0.1)
    output = core.step_down(0.2)
    assert core.role is NodeState.FOLLOWER
    assert core.leader_id == "b"
    assert output.leader_change is None
    assert output.messages == ()


@run_async
async def test_after_step_down_another_node_leads_a_newer_term() -> None:
    cluster = Cluster(3, seed=5)
    await cluster.start()
    try:
        old = await cluster.wait_for_agreed_leader()
        old_term = cluster.elections[old].status().term
        cluster.elections[old].step_down()

        def new_leader() -> bool:
            leader = cluster.agreed_leader()
            return leader is not None and leader != old

        await wait_until(new_leader, what="a leader other than the one that stepped down")
        leader = cluster.agreed_leader()
        assert leader is not None
        assert cluster.elections[leader].status().term > old_term
    finally:
        await cluster.close()

"""Leaving the election: a leader hands over and the core decides when it is gone."""

from __future__ import annotations

import random

from almost_raft import (
    ElectionConfig,
    ElectionCore,
    HeartBeat,
    HeartBeatResponse,
    NodeState,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from helpers.core import leader_of_three

CONFIG = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1)


def leader() -> ElectionCore:
    return leader_of_three(CONFIG)


def test_a_leaving_leader_hands_over_and_stays_until_its_successor_leads() -> None:
    core = leader()
    core.receive(HeartBeatResponse(1, "c"), 5.0)
    out = core.leave(5.0)
    assert [(o.to, o.message) for o in out.messages] == [("c", TimeoutNow(1, "a"))]
    assert core.role is NodeState.FOLLOWER
    assert out.next_deadline == 5.0 + CONFIG.election_timeout
    # It still votes: the successor's election may need it.
    # (from a candidate with the configuration the leader re-made in term 1)
    request = RequestVote(2, "c", transfer=True, config_term=1, config_version=1)
    out = core.receive(request, 5.01)
    assert [o.message for o in out.after_save()] == [RequestVoteResponse(2, "a", True)]
    # Once the successor leads, one heartbeat more.
    out = core.receive(HeartBeat(2, "c"), 5.02)
    assert out.next_deadline == 5.02 + CONFIG.heartbeat_interval
    assert core.tick(5.1).role is None
    out = core.tick(5.12)
    assert out.role is NodeState.TERMINATING
    assert out.next_deadline == float("inf")


def test_a_leaving_leader_whose_hand_over_is_lost_leaves_after_an_election_timeout() -> None:
    core = leader()
    core.leave(5.0)
    out = core.tick(5.0 + CONFIG.election_timeout - 0.01)
    assert out.messages == ()
    assert core.role is NodeState.FOLLOWER
    assert core.tick(5.0 + CONFIG.election_timeout).role is NodeState.TERMINATING


def test_a_leaving_node_refuses_a_hand_over_to_itself() -> None:
    core = leader()
    core.leave(5.0)
    core.receive(HeartBeat(2, "b"), 5.01)
    out = core.receive(TimeoutNow(2, "b"), 5.02)
    assert out.messages == ()
    assert core.role is NodeState.FOLLOWER
    assert core.metrics.dropped["leaving"] == 1


def test_a_follower_or_a_leader_without_hand_over_leaves_at_once() -> None:
    follower = ElectionCore("a", ["b", "c"], CONFIG, random.Random(1), 0.0)
    assert follower.leave(0.1).role is NodeState.TERMINATING
    core = leader()
    out = core.leave(5.0, hand_over=False)
    assert out.role is NodeState.TERMINATING
    assert out.messages == ()


def test_leave_twice_changes_nothing() -> None:
    core = leader()
    first = core.leave(5.0)
    second = core.leave(5.5)
    assert second.messages == ()
    assert second.next_deadline == first.next_deadline

"""The core's own rules beyond the paper: membership limits, removal, termination, corners."""

from __future__ import annotations

import random
from typing import Any

import pytest

from almost_raft import (
    ConfigError,
    ElectionConfig,
    ElectionCore,
    HardState,
    HeartBeat,
    LeaderChange,
    Member,
    NodeState,
    Output,
    RequestVote,
    RequestVoteResponse,
)


def make_core(
    peers: tuple[str, ...] = ("b", "c"), *, hard_state: HardState | None = None, **config: Any
) -> ElectionCore:
    return ElectionCore("a", peers, ElectionConfig(**config), random.Random(1), 0.0, hard_state)


def role(core: ElectionCore) -> NodeState:
    return core.role


def timeout(core: ElectionCore) -> Output:
    return core.tick(core.next_deadline)


def test_pre_candidate_that_grants_a_vote_stops_its_pre_campaign() -> None:
    # Granting a vote resets the election timer (paper 5.2): the node is waiting for the
    # candidate it voted for, so the pre-votes it asked for earlier must not make it a
    # candidate in the next term and disrupt that election.
    core = make_core(hard_state=HardState(1, None))
    timeout(core)
    assert role(core) is NodeState.PRE_CANDIDATE
    now = core.next_deadline - 1.5
    out = core.receive(RequestVote(1, "c"), now)
    assert [o.message for o in out.messages] == [RequestVoteResponse(1, "a", True)]
    assert role(core) is NodeState.FOLLOWER
    core.receive(RequestVoteResponse(2, "b", True, pre_vote=True), now)
    assert (role(core), core.term, core.voted_for) == (NodeState.FOLLOWER, 1, "c")


def test_no_election_below_min_peers() -> None:
    core = make_core(peers=("b",), min_peers=2)
    for _ in range(5):
        assert timeout(core).messages == ()
    assert (role(core), core.term) == (NodeState.FOLLOWER, 0)
    core.add_peer("c", core.next_deadline - 0.5)
    assert timeout(core).messages


def test_timed_out_follower_below_min_peers_forgets_its_leader() -> None:
    # A follower whose timer fires has not heard from its leader for an election timeout;
    # it must stop reporting that leader even when too few peers remain to campaign.
    core = make_core(min_peers=2)
    core.receive(HeartBeat(1, "b"), 0.0)
    core.remove_peer("c", 0.1)
    out = timeout(core)
    assert core.leader_id is None
    assert out.leader_change == LeaderChange(None, 1)


def test_candidate_below_min_peers_returns_to_follower() -> None:
    core = make_core(min_peers=2, pre_vote=False)
    timeout(core)
    assert role(core) is NodeState.CANDIDATE
    core.remove_peer("c", core.next_deadline - 0.5)
    assert role(core) is NodeState.CANDIDATE  # 1 of 2 votes: still pending
    timeout(core)
    assert (role(core), core.term) == (NodeState.FOLLOWER, 1)


def test_removing_a_peer_can_decide_a_pending_vote() -> None:
    core = make_core(peers=("b", "c", "d"), pre_vote=False)
    timeout(core)
    core.receive(RequestVoteResponse(1, "b", True), core.next_deadline - 0.5)
    assert role(core) is NodeState.CANDIDATE  # 2 of 4
    core.remove_peer("d", core.next_deadline - 0.5)
    assert role(core) is NodeState.LEADER  # 2 of 3


def test_peer_added_during_a_campaign_is_asked_too() -> None:
    core = make_core(pre_vote=False)
    timeout(core)
    out = core.add_peer("d", core.next_deadline - 0.5)
    assert [(o.to, o.message) for o in out.messages] == [
        ("d", RequestVote(1, "a", voters=("a", "b", "c", "d")))
    ]


def test_peer_added_to_a_leader_gets_a_heartbeat() -> None:
    core = make_core(peers=(), pre_vote=False)
    timeout(core)
    assert role(core) is NodeState.LEADER
    # Once a leader made a configuration, adding a peer asks for the change: the peer
    # joins as a non-voter and hears of it at once.
    out = core.add_peer("b", core.next_deadline)
    assert [(o.to, o.message) for o in out.messages] == [
        (
            "b",
            HeartBeat(1, "a", configuration=core.configuration, committed_version=1, round=2),
        )
    ]
    assert core.configuration.member("b") == Member("b", voter=False)


def test_max_nodes_counts_this_node() -> None:
    core = make_core(peers=("b",), max_nodes=3)
    core.add_peer("c", 0.1)
    core.add_peer("d", 0.2)
    assert core.peers == {"b", "c"}


def test_terminated_core_does_nothing() -> None:
    core = make_core()
    core.receive(HeartBeat(1, "b"), 0.0)
    out = core.terminate(0.1)
    assert out.role is NodeState.TERMINATING
    assert out.leader_change == LeaderChange(None, 1)
    assert core.next_deadline == float("inf")
    assert core.tick(100.0).messages == ()
    assert core.receive(RequestVote(5, "c"), 100.0).messages == ()
    assert (core.term, core.voted_for) == (1, None)
    assert core.terminate(101.0) == Output(next_deadline=float("inf"))


def test_core_ignores_itself_in_its_peer_list() -> None:
    core = ElectionCore("a", ["a", "b"], ElectionConfig(), random.Random(1), 0.0)
    assert core.peers == {"b"}


def test_hard_state_is_reported_only_when_it_changes() -> None:
    core = make_core(pre_vote=False)
    first = timeout(core)
    assert first.hard_state == HardState(1, "a")
    again = core.receive(RequestVoteResponse(1, "b", False), core.next_deadline - 0.5)
    assert again.hard_state is None


def test_the_core_judges_ids_and_cluster_size_with_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        make_core(peers=("b", "c", "d"), max_nodes=3)
    assert info.value.field == "peers"
    with pytest.raises(ConfigError) as info:
        make_core(peers=("b", "x" * 300))
    assert info.value.field == "peers"
    core = make_core()
    with pytest.raises(ConfigError) as info:
        core.add_peer("", 0.1)
    assert info.value.field == "peer_id"

"""Hand-over and crash evidence: leadership moves in a round trip, not a timeout."""

from __future__ import annotations

import itertools
import random

import pytest

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
from helpers.cluster import Cluster, run_async, wait_until
from helpers.core import leader_of_three

CONFIG = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1)


def _leader_of_three() -> ElectionCore:
    return leader_of_three(CONFIG)


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


def _follower_of(leader: str, term: int = 3) -> ElectionCore:
    core = ElectionCore("a", ["b", "c"], CONFIG, random.Random(2), 0.0)
    core.receive(HeartBeat(term, leader), 0.1)
    assert core.leader_id == leader
    return core


@run_async
async def test_a_closing_leader_stays_until_its_successor_leads() -> None:
    cluster = Cluster(3, seed=5)
    await cluster.start()
    try:
        old = await cluster.wait_for_agreed_leader()
        old_term = cluster.elections[old].status().term
        await cluster.stop(old)
        # When close() returns, the successor leads a newer term and both remaining nodes
        # know it: the leaving leader stayed connected until then.
        views = {e.status().leader_id for e in cluster.elections.values()}
        terms = {e.status().term for e in cluster.elections.values()}
        (view,) = views
        assert view is not None
        (term,) = terms
        assert term > old_term
    finally:
        await cluster.close()


def test_leader_hands_over_to_the_peer_heard_most_recently() -> None:
    core = _leader_of_three()
    core.receive(HeartBeatResponse(1, "c"), 1.0)
    core.receive(HeartBeatResponse(1, "b"), 1.1)
    output = core.transfer_leadership(1.2)
    assert [(o.to, o.message) for o in output.messages] == [("b", TimeoutNow(1, "a"))]
    assert core.role is NodeState.FOLLOWER


def test_timeout_now_makes_a_follower_campaign_at_once_without_pre_vote() -> None:
    core = _follower_of("b")
    output = core.receive(TimeoutNow(3, "b"), 0.2)
    assert core.role is NodeState.CANDIDATE
    assert core.term == 4
    assert output.hard_state is not None
    assert {o.message for o in output.messages} == {
        RequestVote(4, "a", transfer=True, voters=("a", "b", "c"))
    }


def test_a_handed_over_vote_request_passes_the_leader_lease() -> None:
    core = _follower_of("b")
    # Within the lease an ordinary request is ignored ...
    assert core.receive(RequestVote(4, "c"), 0.2).messages == ()
    assert core.term == 3
    # ... but the leader's own hand-over is answered.
    output = core.receive(RequestVote(4, "c", transfer=True), 0.2)
    assert [o.message for o in output.messages] == [RequestVoteResponse(4, "a", granted=True)]
    assert core.voted_for == "c"


def test_timeout_now_from_a_node_that_is_not_the_leader_is_dropped() -> None:
    core = _follower_of("b")
    assert core.receive(TimeoutNow(3, "c"), 0.2).messages == ()
    assert core.role is NodeState.FOLLOWER
    assert core.metrics.dropped["conflicting_leader"] == 1


def test_leader_down_evidence_makes_the_follower_campaign_within_its_turn() -> None:
    core = _follower_of("b")
    output = core.peer_unreachable("b", 0.2)
    assert output.leader_change is not None
    assert output.leader_change.leader_id is None
    assert output.next_deadline < 0.2 + 2 * CONFIG.leader_down_step
    assert core.metrics.leader_down_reports == 1
    core.tick(output.next_deadline)
    assert core.role is NodeState.PRE_CANDIDATE


def test_followers_take_turns_so_they_do_not_split_the_vote() -> None:
    ids = ["a", "b", "c", "d", "e"]
    step = CONFIG.leader_down_step
    for term in range(1, 6):
        deadlines = []
        first = []
        for seed, node in enumerate(ids[1:]):
            core = ElectionCore(node, ids, CONFIG, random.Random(seed), 0.0)
            core.receive(HeartBeat(term, "a"), 0.1)
            output = core.peer_unreachable("a", 0.2)
            if core.role is NodeState.PRE_CANDIDATE:
                first.append(node)
                deadlines.append(0.0)
            else:
                deadlines.append(output.next_deadline - 0.2)
        # One follower per step, the first at once (in the same input): no two campaign
        # together.
        assert len(first) == 1
        deadlines.sort()
        for earlier, later in itertools.pairwise(deadlines):
            assert later - earlier > step / 2


def test_evidence_about_a_peer_that_is_not_the_leader_changes_nothing() -> None:
    core = _follower_of("b")
    deadline = core.next_deadline
    output = core.peer_unreachable("c", 0.2)
    assert output.leader_change is None
    assert core.next_deadline == deadline
    assert core.leader_id == "b"


def test_leader_down_delay_zero_turns_the_evidence_off() -> None:
    config = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1, leader_down_delay=0)
    core = ElectionCore("a", ["b", "c"], config, random.Random(2), 0.0)
    core.receive(HeartBeat(3, "b"), 0.1)
    assert core.peer_unreachable("b", 0.2).leader_change is None
    assert core.leader_id == "b"


def test_a_hand_over_for_a_far_later_term_does_not_pass_the_lease() -> None:
    core = _follower_of("b")
    assert core.receive(RequestVote(1000, "c", transfer=True), 0.2).messages == ()
    assert core.term == 3
    assert core.metrics.dropped["vote_request_during_lease"] == 1


def test_after_leader_down_evidence_retries_are_short_until_a_leader_is_heard() -> None:
    core = _follower_of("b")
    campaign_at = core.peer_unreachable("b", 0.2).next_deadline
    core.tick(campaign_at)  # pre-vote, which no one answers
    assert core.role is NodeState.PRE_CANDIDATE
    step = CONFIG.leader_down_step
    assert step <= core.next_deadline - campaign_at <= 2 * step
    low, _ = CONFIG.election_timeout_range
    # A leader heard again ends the short retries.
    core.receive(HeartBeat(4, "c"), 0.5)
    assert core.next_deadline >= 0.5 + low


def test_granting_a_pre_vote_after_leader_down_evidence_postpones_competing() -> None:
    core = _follower_of("b")
    first = core.peer_unreachable("b", 0.2).next_deadline
    output = core.receive(RequestVote(4, "c", pre_vote=True), first - 0.001)
    assert [o.message for o in output.messages] == [
        RequestVoteResponse(4, "a", granted=True, pre_vote=True)
    ]
    assert core.next_deadline >= first - 0.001 + CONFIG.leader_down_step


def test_a_vote_request_dropped_during_the_lease_is_granted_once_the_leader_is_known_dead() -> None:
    core = _follower_of("b")
    # c learned of the crash a moment before a did: its pre-vote arrives while a still
    # believes in b, and is dropped without an answer, as the lease demands.
    assert core.receive(RequestVote(4, "c", pre_vote=True), 0.2).messages == ()
    output = core.peer_unreachable("b", 0.201)
    assert [(o.to, o.message) for o in output.messages] == [
        ("c", RequestVoteResponse(4, "a", granted=True, pre_vote=True))
    ]
    # Looked at once: a second report of the same evidence grants nothing more.
    assert core.peer_unreachable("b", 0.202).messages == ()


def test_a_held_vote_request_is_not_granted_if_the_leader_was_heard_since() -> None:
    core = _follower_of("b")
    core.receive(RequestVote(4, "c", pre_vote=True), 0.2)
    core.receive(HeartBeat(3, "b"), 0.205)
    output = core.peer_unreachable("b", 0.206)
    assert [o.message for o in output.messages if isinstance(o.message, RequestVoteResponse)] == []


def test_a_held_vote_request_expires_after_one_leader_down_step() -> None:
    core = _follower_of("b")
    core.receive(RequestVote(4, "c", pre_vote=True), 0.2)
    output = core.peer_unreachable("b", 0.2 + CONFIG.leader_down_step + 0.001)
    assert [o.message for o in output.messages if isinstance(o.message, RequestVoteResponse)] == []


def test_a_real_vote_request_held_during_the_lease_is_granted_on_evidence() -> None:
    config = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1, pre_vote=False)
    core = ElectionCore("a", ["b", "c"], config, random.Random(2), 0.0)
    core.receive(HeartBeat(3, "b"), 0.1)
    assert core.receive(RequestVote(4, "c"), 0.2).messages == ()
    assert core.term == 3
    output = core.peer_unreachable("b", 0.201)
    # The vote breaks the promise a made to b at 0.1; it says how much was left, so that
    # c waits that out before it starts exclusive work.
    (vote,) = [o.message for o in output.messages]
    assert isinstance(vote, RequestVoteResponse)
    assert vote == RequestVoteResponse(4, "a", granted=True, promise_left=vote.promise_left)
    assert vote.promise_left == pytest.approx(0.899)
    assert (core.term, core.voted_for) == (4, "c")
    assert output.hard_state is not None

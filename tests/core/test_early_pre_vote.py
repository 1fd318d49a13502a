"""Pre-vote requests sent when the connection to the leader ends, before the evidence.

The first in line to succeed a crashed leader asks as soon as its connection to the
leader ends (``peer_disconnected``), and the voters hold the requests until their own
evidence. What must never follow from a connection's end alone: a changed term, a lost
leader, a granted vote, or a campaign.
"""

from __future__ import annotations

import random

from almost_raft import (
    ElectionConfig,
    ElectionCore,
    HeartBeat,
    NodeState,
    Outbound,
    RequestVote,
    RequestVoteResponse,
)
from almost_raft.core._leader_down import campaign_turn

CONFIG = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1)
IDS = ["a", "b", "c", "d", "e"]
TERM = 3
LEADER = "e"


def _follower(node: str, config: ElectionConfig = CONFIG) -> ElectionCore:
    core = ElectionCore(node, IDS, config, random.Random(IDS.index(node)), 0.0)
    core.receive(HeartBeat(TERM, LEADER), 0.1)
    assert core.leader_id == LEADER
    return core


def _in_line(place: int) -> str:
    """The follower at ``place`` (0 first) among the survivors of ``LEADER`` in ``TERM``."""
    survivors = sorted(set(IDS) - {LEADER})
    return next(n for n in survivors if campaign_turn(survivors, n, TERM) == place)


def _pre_votes(core: ElectionCore, now: float) -> list[tuple[str, RequestVote]]:
    output = core.peer_disconnected(LEADER, now)
    return [
        (o.to, o.message)
        for o in output.messages
        if isinstance(o.message, RequestVote) and o.message.pre_vote
    ]


def _grant(voter: str) -> RequestVoteResponse:
    return RequestVoteResponse(TERM + 1, voter, granted=True, pre_vote=True)


def test_the_first_in_line_asks_every_voter_and_changes_nothing_else() -> None:
    core = _follower(_in_line(0))
    deadline = core.next_deadline
    output = core.peer_disconnected(LEADER, 0.2)
    asked = sorted(o.to for o in output.messages)
    assert asked == sorted(set(IDS) - {core.node_id})
    assert all(
        isinstance(o.message, RequestVote) and o.message.pre_vote and o.message.term == TERM + 1
        for o in output.messages
    )
    # Still a follower of the same leader, in the same term, with the same deadline.
    assert (output.hard_state, output.leader_change, output.role) == (None, None, None)
    assert (core.role, core.term, core.leader_id) == (NodeState.FOLLOWER, TERM, LEADER)
    assert core.next_deadline == deadline
    assert core.metrics.early_pre_votes == 1
    # Asked once: the other end of the same connection pair changes nothing more.
    assert core.peer_disconnected(LEADER, 0.201).messages == ()


def test_the_others_in_line_do_not_ask() -> None:
    for place in (1, 2, 3):
        core = _follower(_in_line(place))
        assert _pre_votes(core, 0.2) == []
        assert core.metrics.early_pre_votes == 0


def test_the_end_of_a_connection_to_a_peer_that_does_not_lead_changes_nothing() -> None:
    core = _follower(_in_line(0))
    other = next(n for n in IDS if n not in (core.node_id, LEADER))
    assert core.peer_disconnected(other, 0.2).messages == ()
    assert core.peer_disconnected(core.node_id, 0.2).messages == ()


def test_no_early_ask_without_pre_vote_check_quorum_or_leader_down_turns() -> None:
    node = _in_line(0)
    for config in (
        ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1, pre_vote=False),
        ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1, check_quorum=False),
        ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1, leader_down_delay=0),
    ):
        assert _pre_votes(_follower(node, config), 0.2) == []


def test_grants_to_early_requests_make_no_candidate_without_evidence() -> None:
    core = _follower(_in_line(0))
    _pre_votes(core, 0.2)
    voters = [n for n in IDS if n not in (core.node_id, LEADER)]
    for voter in voters:
        output = core.receive(_grant(voter), 0.25)
        assert (output.hard_state, output.role, output.messages) == (None, None, ())
    assert (core.role, core.term, core.leader_id) == (NodeState.FOLLOWER, TERM, LEADER)
    # It still hears its leader, so it holds another candidate's request unanswered, as
    # any follower in the leader lease does.
    assert core.receive(RequestVote(TERM + 1, voters[0], pre_vote=True), 0.26).messages == ()
    assert core.metrics.dropped["vote_request_during_lease"] == 1


def test_evidence_then_counts_the_early_grants_and_campaigns_at_once() -> None:
    core = _follower(_in_line(0))
    _pre_votes(core, 0.2)
    voters = [n for n in IDS if n not in (core.node_id, LEADER)]
    core.receive(_grant(voters[0]), 0.25)
    core.receive(_grant(voters[1]), 0.26)
    output = core.peer_unreachable(LEADER, 0.27)
    # Two grants and its own vote are a majority of five: a real election, at once.
    assert core.role is NodeState.CANDIDATE
    assert core.term == TERM + 1
    requests = [o.message for o in output.messages if isinstance(o.message, RequestVote)]
    assert requests
    assert not any(r.pre_vote for r in requests)


def test_evidence_with_one_early_grant_asks_again_only_who_has_not_answered() -> None:
    core = _follower(_in_line(0))
    _pre_votes(core, 0.2)
    voters = sorted(n for n in IDS if n not in (core.node_id, LEADER))
    core.receive(_grant(voters[0]), 0.25)
    output = core.peer_unreachable(LEADER, 0.26)
    assert core.role is NodeState.PRE_CANDIDATE
    asked = sorted(o.to for o in output.messages if isinstance(o.message, RequestVote))
    assert asked == sorted(set(IDS) - {core.node_id, voters[0]})
    core.receive(_grant(voters[1]), 0.3)
    assert core.term == TERM + 1  # a candidate now


def test_an_early_refusal_counts_as_a_refusal() -> None:
    core = _follower(_in_line(0))
    _pre_votes(core, 0.2)
    voters = sorted(n for n in IDS if n not in (core.node_id, LEADER))
    for voter in voters:
        core.receive(RequestVoteResponse(TERM, voter, granted=False, pre_vote=True), 0.25)
    core.peer_unreachable(LEADER, 0.26)
    # Three refusals of five: the pre-vote round is lost as soon as it starts.
    assert core.role is NodeState.FOLLOWER
    assert core.term == TERM


def test_a_heartbeat_ends_the_early_ask() -> None:
    core = _follower(_in_line(0))
    _pre_votes(core, 0.2)
    voters = sorted(n for n in IDS if n not in (core.node_id, LEADER))
    core.receive(HeartBeat(TERM, LEADER), 0.22)  # the connection only blipped
    core.receive(_grant(voters[0]), 0.25)
    core.receive(_grant(voters[1]), 0.25)
    # Evidence after that starts an ordinary round: every voter is asked afresh.
    output = core.peer_unreachable(LEADER, 0.3)
    assert core.role is NodeState.PRE_CANDIDATE
    asked = sorted(o.to for o in output.messages if isinstance(o.message, RequestVote))
    assert asked == sorted(set(IDS) - {core.node_id})
    # And the connection's next end asks early again.
    core.receive(HeartBeat(TERM, LEADER), 0.4)
    assert len(_pre_votes(core, 0.5)) == 4


def test_an_election_timer_that_fires_first_asks_afresh() -> None:
    core = _follower(_in_line(0))
    _pre_votes(core, 0.2)
    voters = sorted(n for n in IDS if n not in (core.node_id, LEADER))
    core.receive(_grant(voters[0]), 0.25)
    core.receive(_grant(voters[1]), 0.25)
    # No evidence ever came (the redial timed out, say): the early grants count for
    # nothing, and the timer's round asks every voter.
    output = core.tick(core.next_deadline)
    assert core.role is NodeState.PRE_CANDIDATE
    assert len([o for o in output.messages if isinstance(o.message, RequestVote)]) == 4


def test_answers_to_early_requests_are_not_timed_as_round_trips() -> None:
    core = _follower(_in_line(0))
    voter = next(n for n in IDS if n not in (core.node_id, LEADER))
    # An earlier request to the voter was timed; the early one replaces it untimed.
    core.round_trips.vote_asked(voter, 0.19)
    _pre_votes(core, 0.2)
    core.receive(_grant(voter), 0.29)
    assert core.round_trips.peer_high(voter, 0.29) is None


def test_a_leaving_follower_does_not_ask() -> None:
    core = _follower(_in_line(0))
    core.leave(0.15)  # not a leader: it terminates at once
    assert _pre_votes(core, 0.2) == []


# ------------------------------------------------------------ a voter whose connection ended


def _early_request() -> RequestVote:
    return RequestVote(TERM + 1, _in_line(0), pre_vote=True)


def _granted(messages: tuple[Outbound, ...], to: str) -> bool:
    return any(
        o.to == to and isinstance(o.message, RequestVoteResponse) and o.message.granted
        for o in messages
    )


def test_a_voter_whose_connection_ended_too_grants_the_held_early_request_then() -> None:
    voter = _follower(_in_line(1))
    # It still hears its leader: held, not answered.
    assert voter.receive(_early_request(), 0.2).messages == ()
    output = voter.peer_disconnected(LEADER, 0.21)
    assert _granted(output.messages, _in_line(0))
    # A pre-vote changes nothing: same term, same leader, no vote, no save.
    assert output.hard_state is None
    assert (voter.role, voter.term, voter.leader_id) == (NodeState.FOLLOWER, TERM, LEADER)
    assert voter.voted_for is None


def test_after_its_own_connection_ended_a_voter_grants_the_early_request_on_arrival() -> None:
    voter = _follower(_in_line(2))
    voter.peer_disconnected(LEADER, 0.2)
    assert _granted(voter.receive(_early_request(), 0.21).messages, _in_line(0))


def test_a_connection_end_lifts_the_pre_vote_rule_for_the_first_in_line_only() -> None:
    voter = _follower(_in_line(1))
    voter.peer_disconnected(LEADER, 0.2)
    # Another node's pre-vote, and the first in line's real vote, are dropped as before.
    other = RequestVote(TERM + 1, _in_line(2), pre_vote=True)
    assert voter.receive(other, 0.21).messages == ()
    real = RequestVote(TERM + 1, _in_line(0))
    assert voter.receive(real, 0.22).messages == ()
    assert (voter.term, voter.voted_for) == (TERM, None)
    # And a pre-vote for a term further ahead.
    ahead = RequestVote(TERM + 2, _in_line(0), pre_vote=True)
    assert voter.receive(ahead, 0.23).messages == ()


def test_a_heartbeat_after_the_end_restores_the_pre_vote_rule() -> None:
    voter = _follower(_in_line(1))
    voter.peer_disconnected(LEADER, 0.2)
    voter.receive(HeartBeat(TERM, LEADER), 0.22)  # the connection only blipped
    assert voter.receive(_early_request(), 0.23).messages == ()


def test_the_end_of_a_connection_to_a_peer_that_does_not_lead_lifts_nothing() -> None:
    voter = _follower(_in_line(1))
    voter.peer_disconnected(_in_line(3), 0.2)
    assert voter.receive(_early_request(), 0.21).messages == ()


def test_without_check_quorum_a_connection_end_lifts_nothing() -> None:
    config = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1, check_quorum=False)
    voter = _follower(_in_line(1), config)
    voter.peer_disconnected(LEADER, 0.2)
    output = voter.receive(_early_request(), 0.21)
    assert not _granted(output.messages, _in_line(0))

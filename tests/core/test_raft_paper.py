"""The election rules of the Raft paper (5.1, 5.2), the thesis (4.2.3, 6.2, 9.6), one test each.

Each test drives one :class:`ElectionCore` directly with a seeded rng and hand-made
messages, and is named after the claim it checks.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from almost_raft import (
    ElectionConfig,
    ElectionCore,
    HardState,
    HeartBeat,
    HeartBeatResponse,
    LeaderChange,
    NodeState,
    Outbound,
    Output,
    RequestVote,
    RequestVoteResponse,
)
from almost_raft.core._messages import MAX_TERM

PEERS = ("b", "c")
# A starting configuration names its voters in every vote request.
VOTERS = ("a", "b", "c")


def make_core(
    node_id: str = "a",
    peers: tuple[str, ...] = PEERS,
    *,
    seed: int = 1,
    now: float = 0.0,
    hard_state: HardState | None = None,
    **config: Any,
) -> ElectionCore:
    return ElectionCore(
        node_id, peers, ElectionConfig(**config), random.Random(seed), now, hard_state
    )


def role(core: ElectionCore) -> NodeState:
    """The core's role, read afresh (a property mypy would otherwise keep narrowed)."""
    return core.role


def timeout(core: ElectionCore) -> Output:
    """Fire the core's next deadline."""
    return core.tick(core.next_deadline)


def sent(out: Output) -> list[tuple[str, object]]:
    return [(o.to, o.message) for o in out.messages]


def elect(core: ElectionCore) -> float:
    """Make ``core`` (a member of a, b, c) leader of the next term; return the time."""
    now = core.next_deadline
    out = core.tick(now)
    # Answered at once: the round trips the core measures, which CheckQuorum's window
    # follows, stay zero.
    if core.role is NodeState.PRE_CANDIDATE:
        core.receive(RequestVoteResponse(core.term + 1, "b", True, pre_vote=True), now)
    assert role(core) is NodeState.CANDIDATE, out
    core.receive(RequestVoteResponse(core.term, "b", True), now)
    assert role(core) is NodeState.LEADER
    return now


# ---------------------------------------------------------------------- 5.2 timeouts


def test_follower_starts_election_after_timeout() -> None:
    core = make_core(pre_vote=False)
    assert core.tick(core.next_deadline - 0.001).messages == ()
    out = timeout(core)
    assert role(core) is NodeState.CANDIDATE
    assert core.term == 1
    assert out.role is NodeState.CANDIDATE


def test_timeout_is_drawn_from_the_configured_range() -> None:
    for seed in range(50):
        core = make_core(seed=seed, now=10.0, election_timeout=0.5, election_timeout_max=0.7)
        assert 10.5 <= core.next_deadline < 10.7


def test_timeout_redrawn_every_election() -> None:
    core = make_core(pre_vote=False)
    waits = []
    for _ in range(5):
        start = core.next_deadline
        timeout(core)
        waits.append(core.next_deadline - start)
    assert core.term == 5
    assert len(set(waits)) == 5
    assert all(1.0 <= w < 2.0 for w in waits)


def test_same_seed_replays_the_same_timeouts() -> None:
    first, second = make_core(seed=42), make_core(seed=42)
    for _ in range(3):
        assert first.next_deadline == second.next_deadline
        assert sent(timeout(first)) == sent(timeout(second))


def test_follower_resets_its_timer_on_heartbeat() -> None:
    core = make_core()
    deadline = core.next_deadline
    core.receive(HeartBeat(1, "b"), deadline - 0.01)
    assert core.next_deadline >= deadline - 0.01 + 1.0
    assert core.tick(deadline).messages == ()
    assert role(core) is NodeState.FOLLOWER
    assert core.leader_id == "b"


# ---------------------------------------------------------------------- 5.2 candidates


def test_candidate_votes_for_itself() -> None:
    core = make_core(pre_vote=False)
    out = timeout(core)
    assert core.voted_for == "a"
    assert out.hard_state == HardState(1, "a")


def test_candidate_requests_votes_from_every_peer_in_order() -> None:
    core = make_core(peers=("c", "d", "b"), pre_vote=False)
    out = timeout(core)
    assert sent(out) == [
        (p, RequestVote(1, "a", voters=("a", "b", "c", "d"))) for p in ("b", "c", "d")
    ]


def test_vote_is_persisted_in_the_same_batch_that_asks_for_votes() -> None:
    # The runtime saves the batch's hard state before sending its messages (paper 5.2,
    # thesis 3.8), so the vote and the requests must come out together.
    core = make_core(pre_vote=False)
    out = timeout(core)
    assert out.hard_state == HardState(1, "a")
    assert out.messages


def test_candidate_wins_with_votes_from_a_majority() -> None:
    core = make_core(peers=("b", "c", "d", "e"), pre_vote=False)
    timeout(core)
    now = core.next_deadline - 0.5
    core.receive(RequestVoteResponse(1, "b", True), now)
    assert role(core) is NodeState.CANDIDATE
    out = core.receive(RequestVoteResponse(1, "c", True), now)
    assert role(core) is NodeState.LEADER
    assert out.leader_change == LeaderChange("a", 1)
    # The first heartbeats carry the configuration the leader re-made in its term.
    assert core.configuration.key == (1, 1)
    assert sent(out) == [
        (p, HeartBeat(1, "a", configuration=core.configuration, round=1))
        for p in ("b", "c", "d", "e")
    ]


def test_candidate_counts_a_duplicated_vote_once() -> None:
    core = make_core(peers=("b", "c", "d", "e"), pre_vote=False)
    timeout(core)
    for _ in range(3):
        core.receive(RequestVoteResponse(1, "b", True), core.next_deadline - 0.5)
    assert role(core) is NodeState.CANDIDATE


def test_candidate_first_answer_from_a_voter_wins() -> None:
    core = make_core(pre_vote=False)
    timeout(core)
    now = core.next_deadline - 0.5
    core.receive(RequestVoteResponse(1, "b", False), now)
    core.receive(RequestVoteResponse(1, "b", True), now)
    assert role(core) is NodeState.CANDIDATE
    core.receive(RequestVoteResponse(1, "c", True), now)
    assert role(core) is NodeState.LEADER


def test_candidate_steps_down_on_heartbeat_of_its_term() -> None:
    core = make_core(pre_vote=False)
    timeout(core)
    out = core.receive(HeartBeat(1, "b"), core.next_deadline - 0.5)
    assert role(core) is NodeState.FOLLOWER
    assert core.leader_id == "b"
    assert sent(out) == [("b", HeartBeatResponse(1, "a"))]


def test_candidate_that_loses_becomes_follower_of_the_same_term() -> None:
    core = make_core(pre_vote=False)
    timeout(core)
    now = core.next_deadline - 0.5
    core.receive(RequestVoteResponse(1, "b", False), now)
    core.receive(RequestVoteResponse(1, "c", False), now)
    assert role(core) is NodeState.FOLLOWER
    assert (core.term, core.voted_for) == (1, "a")


def test_candidate_starts_a_new_term_after_a_split_vote() -> None:
    core = make_core(pre_vote=False)
    timeout(core)
    out = timeout(core)
    assert core.term == 2
    assert out.hard_state == HardState(2, "a")
    assert sent(out) == [(p, RequestVote(2, "a", voters=VOTERS)) for p in PEERS]


# ---------------------------------------------------------------------- 5.1/5.2 voters


def test_follower_grants_one_vote_per_term() -> None:
    core = make_core()
    out = core.receive(RequestVote(1, "b"), 0.1)
    assert sent(out) == [("b", RequestVoteResponse(1, "a", True))]
    assert out.hard_state == HardState(1, "b")
    out = core.receive(RequestVote(1, "c"), 0.2)
    assert sent(out) == [("c", RequestVoteResponse(1, "a", False))]
    assert core.voted_for == "b"


def test_follower_repeats_its_vote_for_the_same_candidate() -> None:
    core = make_core()
    core.receive(RequestVote(1, "b"), 0.1)
    out = core.receive(RequestVote(1, "b"), 0.2)
    assert sent(out) == [("b", RequestVoteResponse(1, "a", True))]
    assert out.hard_state is None


def test_vote_survives_a_restart() -> None:
    core = make_core()
    out = core.receive(RequestVote(1, "b"), 0.1)
    assert out.hard_state is not None
    restarted = make_core(seed=2, hard_state=out.hard_state)
    reply = restarted.receive(RequestVote(1, "c"), 0.2)
    assert sent(reply) == [("c", RequestVoteResponse(1, "a", False))]


def test_granting_a_vote_resets_the_election_timer() -> None:
    core = make_core()
    deadline = core.next_deadline
    core.receive(RequestVote(1, "b"), deadline - 0.01)
    assert core.next_deadline >= deadline - 0.01 + 1.0


def test_stale_term_request_is_refused_with_the_current_term() -> None:
    core = make_core(hard_state=HardState(5, None))
    out = core.receive(RequestVote(3, "b"), 0.1)
    assert sent(out) == [("b", RequestVoteResponse(5, "a", False))]
    assert (core.term, core.voted_for) == (5, None)


def test_stale_heartbeat_is_answered_with_the_current_term() -> None:
    core = make_core(hard_state=HardState(5, None))
    out = core.receive(HeartBeat(3, "b"), 0.1)
    assert sent(out) == [("b", HeartBeatResponse(5, "a"))]
    assert core.leader_id is None


def test_higher_term_makes_a_leader_follower_with_no_vote() -> None:
    core = make_core()
    now = elect(core)
    out = core.receive(HeartBeatResponse(7, "b"), now)
    assert role(core) is NodeState.FOLLOWER
    assert out.hard_state == HardState(7, None, core.configuration)
    assert out.leader_change == LeaderChange(None, 7)
    reply = core.receive(RequestVote(7, "c", config_term=1, config_version=1), now)
    # It votes, and says that the promise it made as leader, at its last heartbeat, has a
    # whole election timeout left: the winner's exclusive work waits that out.
    assert sent(reply) == [("c", RequestVoteResponse(7, "a", True, promise_left=1.0))]


def test_term_never_goes_back() -> None:
    core = make_core(hard_state=HardState(4, "b"))
    for message in (HeartBeat(2, "b"), RequestVote(3, "c"), HeartBeatResponse(1, "c")):
        core.receive(message, 0.1)
        assert core.term == 4


# ---------------------------------------------------------------------- 5.2 leaders


def test_leader_sends_heartbeats_every_interval() -> None:
    core = make_core(heartbeat_interval=0.1)
    start = elect(core)
    times: list[float] = []
    while core.next_deadline < start + 0.55:
        now = core.next_deadline
        out = core.tick(now)
        if out.messages:
            # Nobody answered, so every heartbeat still carries the configuration.
            heartbeat = HeartBeat(1, "a", configuration=core.configuration, round=len(times) + 2)
            assert sent(out) == [(p, heartbeat) for p in PEERS]
            times.append(now)
    gaps = [round(b - a, 9) for a, b in zip([start, *times], times, strict=False)]
    assert gaps == [0.1] * 5


def test_leader_reports_itself_once() -> None:
    core = make_core()
    now = elect(core)
    assert core.leader_id == "a"
    assert core.tick(now + 0.1).leader_change is None


def test_leader_hears_answers_only_from_members_of_its_own_term() -> None:
    core = make_core(heartbeat_interval=0.1)
    now = elect(core)
    out = core.tick(now + 0.1)
    (round_number,) = {o.message.round for o in out.messages if isinstance(o.message, HeartBeat)}
    key = core.configuration.key
    term = core.term

    def answer(sender: str, answer_term: int) -> Output:
        message = HeartBeatResponse(answer_term, sender, key[0], key[1], round_number)
        return core.receive(message, now + 0.11)

    # Not one of these is a member's answer in this term: none earns the lease (a majority
    # of three needs one answer besides the leader's own).
    answer("a", term)
    answer("z", term)
    answer("b", term - 1)
    assert core.metrics.dropped["from_self"] == 1
    assert core.metrics.dropped["unknown_sender"] == 1
    assert core.metrics.dropped["stale_term"] == 1
    assert core.lease is None or not core.lease.exclusive_at(now + 0.11)
    assert answer("b", term).lease is not None
    assert core.lease is not None
    assert core.lease.until == pytest.approx(now + 0.1 + core.config.lease_duration)
    # A member's answer of a newer term deposes the leader, as any message of it does.
    answer("c", term + 1)
    assert role(core) is NodeState.FOLLOWER
    assert core.term == term + 1


# ---------------------------------------------------------------------- thesis 9.6 PreVote


def test_pre_candidate_does_not_raise_its_term_or_vote() -> None:
    core = make_core()
    out = timeout(core)
    assert role(core) is NodeState.PRE_CANDIDATE
    assert (core.term, core.voted_for) == (0, None)
    assert out.hard_state is None
    assert sent(out) == [(p, RequestVote(1, "a", pre_vote=True, voters=VOTERS)) for p in PEERS]


def test_pre_vote_does_not_change_the_voters_term_or_vote() -> None:
    core = make_core(hard_state=HardState(3, None))
    out = core.receive(RequestVote(4, "b", pre_vote=True), 0.1)
    assert sent(out) == [("b", RequestVoteResponse(4, "a", True, pre_vote=True))]
    assert out.hard_state is None
    assert (core.term, core.voted_for) == (3, None)


def test_pre_candidate_with_a_majority_becomes_candidate() -> None:
    core = make_core()
    timeout(core)
    out = core.receive(RequestVoteResponse(1, "b", True, pre_vote=True), 0.1)
    assert role(core) is NodeState.CANDIDATE
    assert out.hard_state == HardState(1, "a")
    assert sent(out) == [(p, RequestVote(1, "a", voters=VOTERS)) for p in PEERS]


@pytest.mark.parametrize("check_quorum", [True, False])
def test_pre_vote_refused_while_a_leader_was_heard_within_the_timeout(
    check_quorum: bool,
) -> None:
    # Thesis 9.6: a server grants a pre-vote only if it has not heard from a leader for an
    # election timeout. This is what keeps a returning node from disrupting the cluster,
    # whether or not CheckQuorum is also on.
    core = make_core(check_quorum=check_quorum)
    core.receive(HeartBeat(1, "b"), 0.0)
    out = core.receive(RequestVote(2, "c", pre_vote=True), 0.5)
    assert not any(
        isinstance(o.message, RequestVoteResponse) and o.message.granted for o in out.messages
    )
    assert core.term == 1
    # After an election timeout of silence, the same pre-vote is granted.
    out = core.receive(RequestVote(2, "c", pre_vote=True), 1.0)
    assert sent(out) == [("c", RequestVoteResponse(2, "a", True, pre_vote=True))]


def test_leader_refuses_pre_votes_without_check_quorum() -> None:
    core = make_core(check_quorum=False)
    now = elect(core)
    out = core.receive(RequestVote(2, "c", pre_vote=True), now + 5.0)
    assert role(core) is NodeState.LEADER
    assert sent(out) == [("c", RequestVoteResponse(1, "a", False, pre_vote=True))]


# ---------------------------------------------------------------------- thesis 6.2 CheckQuorum


def test_leader_steps_down_without_a_majority_for_an_election_timeout() -> None:
    core = make_core()
    now = elect(core)
    end = now + 2.0 + 1e-6
    while role(core) is NodeState.LEADER and core.next_deadline <= end:
        out = core.tick(core.next_deadline)
    assert role(core) is NodeState.FOLLOWER
    assert out.leader_change == LeaderChange(None, 1)
    assert core.term == 1


def test_leader_steps_down_an_election_timeout_after_it_last_heard_a_majority() -> None:
    # Thesis 6.2, and ElectionConfig.check_quorum: the leader steps down once an election
    # timeout passes without hearing from a majority, counted from the last answer; not
    # at the next fixed check, which could leave it leading for almost two timeouts while
    # the others, whose lease has expired, elect a successor.
    core = make_core()
    start = elect(core)
    # Every heartbeat is answered at once, so the window is the election timeout alone.
    core.receive(HeartBeatResponse(1, "b"), start)
    last_answer = start
    while core.next_deadline <= start + 0.95:
        t = core.next_deadline
        if core.tick(t).messages:
            core.receive(HeartBeatResponse(1, "b"), t)
            last_answer = t
    assert last_answer > start + 0.8
    while role(core) is NodeState.LEADER and core.next_deadline <= last_answer + 1.0:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.FOLLOWER


def answer_every_round_late(core: ElectionCore, start: float, until: float, late: float) -> float:
    """Let ``b`` answer each heartbeat ``late`` seconds after it left, and ``c`` never;
    returns when the last answer came."""
    last_answer = start
    # The heartbeat the election sent is answered too.
    due = [start + late]
    while True:
        t = min([core.next_deadline, *due])
        if t > until:
            return last_answer
        if due and t == due[0]:
            due.pop(0)
            core.receive(HeartBeatResponse(1, "b"), t)
            last_answer = t
        elif core.tick(t).messages:
            due.append(t + late)


@pytest.mark.parametrize("late", [0.05, 0.3])
def test_check_quorum_waits_one_round_trip_more_than_an_election_timeout(late: float) -> None:
    # An answer lost once comes two heartbeat intervals and a round trip after the one
    # before it; the leader's window is the election timeout and a majority's round trip
    # as it measures them, so a healthy leader outlives one loss per follower.
    core = make_core()
    start = elect(core)
    last_answer = answer_every_round_late(core, start, start + 5.0, late)
    assert role(core) is NodeState.LEADER
    while role(core) is NodeState.LEADER and core.next_deadline <= last_answer + 1.0 + late * 0.9:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.LEADER, "stepped down before the round trip was over"
    while role(core) is NodeState.LEADER and core.next_deadline <= last_answer + 1.0 + late * 1.5:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.FOLLOWER


def test_check_quorum_window_is_the_election_timeout_without_pre_vote() -> None:
    # Without PreVote a successor needs one round trip after its voters' timeouts, not
    # two, so the leader waits no longer than the election timeout.
    core = make_core(pre_vote=False)
    start = elect(core)
    last_answer = answer_every_round_late(core, start, start + 5.0, 0.3)
    while role(core) is NodeState.LEADER and core.next_deadline <= last_answer + 1.0 + 1e-9:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.FOLLOWER


def test_check_quorum_window_never_exceeds_the_longest_election_timeout() -> None:
    # A round trip longer than the election timeout's range adds only the range: the
    # window ends at the longest election timeout (2 s here) after the last answer.
    core = make_core(election_timeout_max=1.2)
    start = elect(core)
    last_answer = answer_every_round_late(core, start, start + 5.0, 0.6)
    while role(core) is NodeState.LEADER and core.next_deadline <= last_answer + 1.1:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.LEADER
    while role(core) is NodeState.LEADER and core.next_deadline <= last_answer + 1.2 + 1e-9:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.FOLLOWER


def test_leader_counts_each_follower_by_its_latest_answer() -> None:
    # With five nodes the leader needs two followers: b last answered with its vote, c and
    # d answered later; the quorum lasts until the older of the two latest answers ages out.
    core = make_core(peers=("b", "c", "d", "e"), pre_vote=False)
    timeout(core)
    start = core.next_deadline - 1.0
    core.receive(RequestVoteResponse(1, "b", True), start)
    core.receive(RequestVoteResponse(1, "c", True), start)
    assert role(core) is NodeState.LEADER
    core.receive(HeartBeatResponse(1, "c"), start + 0.5)
    core.receive(HeartBeatResponse(1, "d"), start + 0.9)
    core.tick(start + 1.2)
    assert role(core) is NodeState.LEADER
    while role(core) is NodeState.LEADER and core.next_deadline <= start + 1.5 + 1e-9:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.FOLLOWER


def test_leader_stays_while_a_majority_answers() -> None:
    core = make_core()
    now = elect(core)
    while core.next_deadline < now + 10:
        t = core.next_deadline
        if core.tick(t).messages:
            core.receive(HeartBeatResponse(1, "b"), t)
    assert role(core) is NodeState.LEADER


def test_leader_without_check_quorum_does_not_step_down() -> None:
    core = make_core(check_quorum=False)
    now = elect(core)
    while core.next_deadline < now + 10:
        core.tick(core.next_deadline)
    assert role(core) is NodeState.LEADER


# ---------------------------------------------------------------------- thesis 4.2.3 stickiness


@pytest.mark.parametrize("pre_vote", [True, False])
def test_follower_ignores_vote_requests_while_it_hears_a_leader(pre_vote: bool) -> None:
    core = make_core()
    core.receive(HeartBeat(1, "b"), 0.0)
    out = core.receive(RequestVote(2, "c", pre_vote=pre_vote), 0.9)
    assert out == Output(next_deadline=core.next_deadline)
    assert (core.term, core.voted_for, core.leader_id) == (1, None, "b")
    assert core.metrics.dropped["vote_request_during_lease"] == 1


def test_leader_ignores_vote_requests_while_it_has_a_quorum() -> None:
    core = make_core()
    now = elect(core)
    out = core.receive(RequestVote(5, "c"), now + 0.1)
    assert out.messages == ()
    assert (role(core), core.term) == (NodeState.LEADER, 1)


# ---------------------------------------------------------------------- bad input


def test_term_at_the_maximum_does_not_crash_an_election() -> None:
    # A peer may send the largest valid term; the node must not crash when it would next
    # campaign, which needs one more term than the format allows.
    core = make_core()
    core.receive(HeartBeat(MAX_TERM, "b"), 0.0)
    for _ in range(3):
        out = timeout(core)
        assert all(o.message.term <= MAX_TERM for o in out.messages)
    assert core.term == MAX_TERM
    single = make_core(peers=(), hard_state=HardState(MAX_TERM, None))
    timeout(single)
    assert single.term == MAX_TERM


def test_output_messages_are_outbound_values() -> None:
    core = make_core(pre_vote=False)
    out = timeout(core)
    assert all(isinstance(o, Outbound) for o in out.messages)

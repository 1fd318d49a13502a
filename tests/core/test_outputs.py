"""Which messages of a batch may leave before its save: the core decides, Output splits."""

from __future__ import annotations

import random

from almost_raft import (
    ElectionConfig,
    ElectionCore,
    HardState,
    HeartBeat,
    Outbound,
    Output,
    RequestVote,
    RequestVoteResponse,
)


def make_core(*, pre_vote: bool = True) -> ElectionCore:
    config = ElectionConfig(pre_vote=pre_vote)
    return ElectionCore("a", ("b", "c"), config, random.Random(1), 0.0)


def test_a_candidates_vote_requests_may_leave_before_its_save() -> None:
    core = make_core(pre_vote=False)
    out = core.tick(core.next_deadline)
    assert out.hard_state == HardState(1, "a")
    assert [(o.to, o.message) for o in out.before_save()] == [
        ("b", RequestVote(1, "a", voters=("a", "b", "c"))),
        ("c", RequestVote(1, "a", voters=("a", "b", "c"))),
    ]
    assert out.after_save() == ()


def test_a_new_leaders_heartbeats_leave_while_its_configuration_is_saved() -> None:
    # They promise nothing: the leader counts its own copy of the configuration only
    # from answers, which reach the core after the save.
    core = make_core(pre_vote=False)
    core.tick(core.next_deadline)
    out = core.receive(RequestVoteResponse(1, "b", True), core.next_deadline - 0.5)
    assert out.hard_state is not None
    assert out.hard_state.configuration == core.configuration
    assert [(o.to, o.message) for o in out.before_save()] == [
        ("b", HeartBeat(1, "a", configuration=core.configuration, round=1)),
        ("c", HeartBeat(1, "a", configuration=core.configuration, round=1)),
    ]
    assert out.after_save() == ()


def test_a_granted_vote_waits_for_the_save() -> None:
    # The vote is the promise the save makes durable: sending it first could let the
    # voter vote twice in one term after a crash.
    core = make_core()
    out = core.receive(RequestVote(1, "b"), 0.01)
    assert out.hard_state == HardState(1, "b")
    assert out.before_save() == ()
    assert [o.message for o in out.after_save()] == [RequestVoteResponse(1, "a", True)]


def test_pre_vote_requests_carry_no_save_and_all_leave_at_once() -> None:
    core = make_core()
    out = core.tick(core.next_deadline)
    assert out.hard_state is None
    assert out.before_save() == out.messages
    assert len(out.messages) == 2
    assert out.after_save() == ()


def test_split_keeps_order_and_loses_nothing() -> None:
    early = Outbound("b", RequestVote(2, "a"), early=True)
    late = Outbound("c", RequestVoteResponse(2, "a", False))
    heartbeat = Outbound("b", HeartBeat(2, "a"))
    out = Output((late, early, heartbeat), HardState(2, None))
    assert out.before_save() == (early,)
    assert out.after_save() == (late, heartbeat)

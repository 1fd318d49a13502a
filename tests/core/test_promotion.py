"""Promoting a non-voter: at once when it is ready, otherwise once it is.

A non-voter is ready when it has saved the leader's configuration and answered the
leader within the last election timeout. Promoting one that is not (down, or never
saved the configuration) would make it needed for a majority it cannot give, and an
operator's mistake would become an outage; the promotion waits instead, as etcd refuses
to promote a learner that is not in sync. Run on the scripted network of the
transcripts, in simulated time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from almost_raft import Configuration, ElectionCore, Member, NodeState
from almost_raft.core._membership import Replication
from helpers.interaction._env import Env

WAITS = "will be promoted once it has saved configuration"


@pytest.fixture
def env() -> Iterator[Env]:
    with Env() as env:
        yield env


def core(env: Env, node_id: str) -> ElectionCore:
    node = env.nodes[node_id]
    assert node.core is not None, f"{node_id} is down"
    return node.core


def is_voter(env: Env, leader: str, node_id: str) -> bool:
    member = core(env, leader).configuration.member(node_id)
    assert member is not None, f"{node_id} is not a member"
    return member.voter


def committed_voter(env: Env, leader: str, node_id: str) -> bool:
    committed = core(env, leader).committed_configuration
    member = None if committed is None else committed.member(node_id)
    return member is not None and member.voter


def leaders(env: Env) -> set[str]:
    return {
        node_id
        for node_id, node in env.nodes.items()
        if node.core is not None and node.core.role is NodeState.LEADER
    }


def three_voters_and_non_voter_d(env: Env, *, d_up: bool) -> None:
    """b leads a, b, c; d is added as a non-voter (v2 committed) and is up or down."""
    env.handle("add-nodes a b c seed=1")
    env.handle("run 3")
    assert leaders(env) == {"b"}
    if d_up:
        env.handle("add-nodes d peers=a,b,c")
    env.handle("add-member b d non-voter")
    env.handle("run 1")
    assert core(env, "b").committed_configuration == core(env, "b").configuration
    assert not is_voter(env, "b", "d")


def test_a_non_voter_that_saved_the_configuration_and_answers_is_promoted_at_once(
    env: Env,
) -> None:
    three_voters_and_non_voter_d(env, d_up=True)

    lines = env.handle("promote b d")

    assert not any(WAITS in line for line in lines)
    assert "INFO b: proposing configuration v3 (term 1): a, b, c, d" in lines
    assert is_voter(env, "b", "d")
    env.handle("run 1")
    assert committed_voter(env, "b", "d")


def test_a_non_voter_that_never_saved_the_configuration_waits_until_it_answers(
    env: Env,
) -> None:
    three_voters_and_non_voter_d(env, d_up=False)

    lines = env.handle("promote b d")

    assert lines == [
        "INFO b: d will be promoted once it has saved configuration v2 and answers; it has "
        "not saved it and has not answered this leader"
    ]
    assert not is_voter(env, "b", "d")
    assert core(env, "b").change_pending
    env.handle("run 2")
    assert not is_voter(env, "b", "d")

    env.handle("add-nodes d peers=a,b,c")
    env.handle("run 1")

    assert committed_voter(env, "b", "d")
    assert not core(env, "b").change_pending


def test_a_non_voter_that_saved_the_configuration_but_went_quiet_waits_until_it_answers(
    env: Env,
) -> None:
    # Saving once is not enough: d has saved v2, but the leader has not heard from it
    # for longer than an election timeout.
    three_voters_and_non_voter_d(env, d_up=True)
    env.handle("crash d")
    env.handle("run 2")

    lines = env.handle("promote b d")

    assert len(lines) == 1
    assert lines[0].startswith(
        "INFO b: d will be promoted once it has saved configuration v2 and answers; it has "
        "saved it and last answered 2."
    )
    assert not is_voter(env, "b", "d")

    env.handle("restart d")
    env.handle("run 1")

    assert committed_voter(env, "b", "d")


def test_promoting_a_down_non_voter_never_costs_the_remaining_voters_their_leader(
    env: Env,
) -> None:
    # The outage this rule prevents: a is the only voter and d a non-voter that is
    # down. Promoted at once, d would be needed for a majority of {a, d}: a would step
    # down at its next CheckQuorum and nobody could lead until d came back.
    env.handle("add-nodes a seed=1 peers=none")
    env.handle("run 3")
    assert leaders(env) == {"a"}
    env.handle("add-member a d non-voter")
    env.handle("run 1")

    env.handle("promote a d")
    env.handle("run 10")

    assert leaders(env) == {"a"}
    assert core(env, "a").term == 1
    assert core(env, "a").configuration.voters == {"a"}

    # Once d is up, it is promoted, and a keeps leading with d's answers.
    env.handle("add-nodes d peers=a")
    env.handle("run 2")
    assert committed_voter(env, "a", "d")
    assert leaders(env) == {"a"}


def test_a_down_voter_of_three_promoted_leaves_the_cluster_one_failure_to_spare(
    env: Env,
) -> None:
    # With d promoted at once there would be four voters needing three; c crashing
    # would then leave a and b without a leader. Waiting, a and b stay a majority.
    three_voters_and_non_voter_d(env, d_up=False)
    env.handle("promote b d")
    env.handle("crash c")
    env.handle("run 10")

    assert leaders(env) == {"b"}
    assert core(env, "b").term == 1
    assert not is_voter(env, "b", "d")


def test_a_waiting_promotion_holds_other_changes_until_it_ends(env: Env) -> None:
    # As for a member added as a voter: one change at a time, and removing the member
    # whose promotion waits is the way out.
    three_voters_and_non_voter_d(env, d_up=False)
    env.handle("promote b d")

    assert env.handle("remove-member b c") == [
        "b: refused: MembershipChangeError: b: the promotion of d is pending: it waits "
        "until d has saved the configuration and answers; retry once it is a voter, or "
        "remove d to cancel it"
    ]
    # Asking again for the same promotion is not another change.
    assert not any("refused" in line for line in env.handle("promote b d"))

    env.handle("remove-member b d")
    env.handle("run 1")

    assert core(env, "b").configuration.member("d") is None
    assert not core(env, "b").change_pending
    assert not any("refused" in line for line in env.handle("remove-member b c"))


def test_a_promotion_asked_behind_the_leader_gate_is_judged_when_it_is_made(env: Env) -> None:
    # A new leader's first configuration commits before any change; the promotion
    # waiting behind it must then still find d ready, which it is not.
    three_voters_and_non_voter_d(env, d_up=False)
    env.handle("crash b")
    env.handle("run 5")
    (leader,) = leaders(env)

    lines = env.handle(f"promote {leader} d")
    assert any("waits until configuration" in line for line in lines)
    env.handle("run 1")

    assert not is_voter(env, leader, "d")
    assert core(env, leader).change_pending


AB_D = Configuration(2, 1, (Member("a"), Member("b"), Member("d", voter=False)))


@pytest.mark.parametrize(
    ("saved", "answered_at", "ready"),
    [
        (True, {"d": 9.5}, True),
        (True, {"d": 8.5}, False),  # saved, then silent for more than the timeout
        (True, {}, False),  # saved under an earlier leader, never heard by this one
        (False, {"d": 9.9}, False),  # answers, still holding an older configuration
    ],
)
def test_replication_promotes_only_members_that_saved_and_answered_recently(
    saved: bool, answered_at: dict[str, float], ready: bool
) -> None:
    # The same rule serves a member added as a voter, whose promotion this also decides.
    replication = Replication("a", AB_D)
    replication.promote.add("d")
    if saved:
        replication.acknowledge("d", AB_D.key)

    assert replication.is_ready("d", answered_at, since=9.0) is ready
    assert replication.ready_to_promote(answered_at, since=9.0) == ("d" if ready else None)

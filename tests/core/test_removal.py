"""A member removed while it was down learns it from a member's RemovalNotice, and only
from a committed configuration that leaves it out; notices are rate-limited."""

from __future__ import annotations

import random

import pytest

from almost_raft import (
    Configuration,
    ElectionConfig,
    ElectionCore,
    HardState,
    HeartBeat,
    HeartBeatResponse,
    Member,
    MembershipQuery,
    NodeState,
    Output,
    RemovalNotice,
    RequestVote,
)
from almost_raft.core._removal import NoticeLimiter, leaves_on_notice, notice_due
from helpers.core import leader_of_three

CONFIG = ElectionConfig(election_timeout=1.0, heartbeat_interval=0.1)

ABC = Configuration(1, 1, (Member("a"), Member("b"), Member("c")))
AB = ABC.without("c", 1)  # v2: c removed
AB_C = AB.with_member(Member("c", voter=False), 1)  # v3: c added again
AB_D = AB.with_member(Member("d", voter=False), 1)  # v3: d joins as a non-voter


def follower(*told: tuple[Configuration, int]) -> ElectionCore:
    """``a``, starting from ``ABC``, then told by its leader ``b`` each configuration with
    the newest committed version, in order."""
    core = ElectionCore("a", ["b", "c"], CONFIG, random.Random(1), 0.0, HardState(1, "b", ABC))
    for now, (configuration, committed_version) in enumerate(told, 1):
        heartbeat = HeartBeat(
            1, "b", configuration=configuration, committed_version=committed_version
        )
        core.receive(heartbeat, now / 100)
    return core


def knows_removal() -> ElectionCore:
    """``a`` holding ``AB``, which it knows committed."""
    core = follower((AB, 2))
    assert core.committed_configuration == AB
    return core


def removed(term: int = 1, configuration: Configuration = ABC) -> ElectionCore:
    """``c``, back after it was down, still holding a configuration that names it."""
    return ElectionCore(
        "c", ["a", "b"], CONFIG, random.Random(1), 0.0, HardState(term, "b", configuration)
    )


def pre_vote(sender: str = "c", configuration: Configuration = ABC) -> RequestVote:
    return RequestVote(
        2,
        sender,
        pre_vote=True,
        config_term=configuration.term,
        config_version=configuration.version,
    )


def notices(out: Output) -> list[tuple[str, RemovalNotice]]:
    return [(o.to, o.message) for o in out.messages if isinstance(o.message, RemovalNotice)]


def test_a_member_that_knows_the_commit_tells_the_removed_node() -> None:
    core = knows_removal()
    out = core.receive(pre_vote(), 1.0)
    assert notices(out) == [("c", RemovalNotice(1, "a", AB))]
    # The request itself is still not heard, and nothing of the member changed.
    assert core.metrics.dropped["unknown_sender"] == 1
    assert out.hard_state is None
    assert (core.role, core.term, core.leader_id) == (NodeState.FOLLOWER, 1, "b")


def test_the_removed_node_leaves_and_saves_the_configuration_that_removed_it() -> None:
    core = removed()
    out = core.receive(RemovalNotice(1, "a", AB), 1.0)
    assert out.role is NodeState.TERMINATING
    assert out.hard_state is not None
    assert out.hard_state.configuration == AB
    assert core.committed_configuration == AB
    assert out.messages == ()


def test_a_leader_tells_a_removed_node_once_it_no_longer_tells_it_by_heartbeat() -> None:
    core = leader_of_three(CONFIG)
    now = 2.0
    core.receive(HeartBeatResponse(1, "b", 1, 1), now)  # the gate's v1 commits
    core.remove_member("c", now)
    core.receive(HeartBeatResponse(1, "b", 1, 2), now)  # v2, without c, commits
    assert core.committed_configuration == core.configuration
    # For an election timeout its heartbeats tell c; it hears c meanwhile.
    assert notices(core.receive(pre_vote(), now + 0.5)) == []
    later = now + CONFIG.election_timeout + 0.1
    core.tick(later)
    [(to, notice)] = notices(core.receive(pre_vote(), later))
    assert (to, notice.configuration) == ("c", core.configuration)


def test_an_uncommitted_configuration_never_makes_a_node_leave() -> None:
    # a holds v2, without c, but knows only v1, which holds c, committed.
    core = follower((ABC, 1), (AB, 1))
    assert (core.configuration, core.committed_configuration) == (AB, ABC)
    assert notices(core.receive(pre_vote(), 1.0)) == []
    # Nor does a node that heard of no commit at all (a restarted one) tell anyone.
    restarted = ElectionCore("a", ["b"], CONFIG, random.Random(1), 0.0, HardState(1, "b", AB))
    assert restarted.committed_configuration is None
    assert notices(restarted.receive(pre_vote(), 1.0)) == []
    assert restarted.metrics.dropped["unknown_sender"] == 1


def test_a_notice_older_than_the_receivers_configuration_is_ignored() -> None:
    # c was added again (v3) and heard of it; a member that lags tells it of v2.
    core = removed(configuration=AB_C)
    out = core.receive(RemovalNotice(1, "a", AB), 1.0)
    assert out.role is None
    assert core.configuration == AB_C
    assert core.metrics.dropped["removal_notice_ignored"] == 1


def test_a_member_being_added_again_is_not_told() -> None:
    # a holds the pending v3 that adds c again; v2 (without c) is the committed one.
    core = follower((AB, 2), (AB_C, 2))
    assert (core.configuration, core.committed_configuration) == (AB_C, AB)
    out = core.receive(pre_vote(), 1.0)
    assert notices(out) == []
    assert core.metrics.dropped["unknown_sender"] == 0


def test_a_new_machine_is_neither_told_nor_leaves() -> None:
    # d runs from its starting configuration (version 0) until it is added.
    member = knows_removal()
    assert notices(member.receive(RequestVote(2, "d", pre_vote=True), 1.0)) == []
    newcomer = ElectionCore("d", ["a", "b"], CONFIG, random.Random(1), 0.0)
    out = newcomer.receive(RemovalNotice(1, "a", AB), 1.0)
    assert out.role is None
    assert newcomer.metrics.dropped["removal_notice_ignored"] == 1


def test_notices_are_rate_limited_per_sender() -> None:
    core = knows_removal()
    assert len(notices(core.receive(pre_vote(), 1.0))) == 1
    assert notices(core.receive(pre_vote(), 1.5)) == []
    # Another removed node is told; c again once an election timeout has passed.
    assert len(notices(core.receive(pre_vote("x"), 1.6))) == 1
    assert notices(core.receive(pre_vote(), 1.99)) == []
    assert len(notices(core.receive(pre_vote(), 2.0))) == 1


def test_the_limiter_holds_at_most_its_capacity() -> None:
    limiter = NoticeLimiter(1.0, capacity=3)
    assert [limiter.allow(n, 0.0) for n in "abc"] == [True, True, True]
    assert not limiter.allow("d", 0.5)  # full, and nobody's interval has passed
    assert limiter.allow("d", 1.0)  # the others are forgotten to make room
    assert len(limiter) == 1
    rng = random.Random(7)
    now = 0.0
    for _ in range(2000):
        now += rng.uniform(0.0, 0.05)
        limiter.allow(f"n{rng.randrange(50)}", now)
        assert len(limiter) <= 3


@pytest.mark.parametrize("notice_term", [1, 9])
def test_a_notice_changes_no_term_and_is_never_stale(notice_term: int) -> None:
    # c raised its term while it asked in vain (PreVote off); the member's is older.
    core = removed(term=5)
    out = core.receive(RemovalNotice(notice_term, "a", AB), 1.0)
    assert out.role is NodeState.TERMINATING
    assert core.term == 5


def test_a_notice_is_never_answered_and_is_heard_only_from_a_member() -> None:
    core = knows_removal()
    # x is a member of neither a's configuration nor the one it offers.
    out = core.receive(RemovalNotice(1, "x", ABC.without("a", 1)), 1.0)
    assert out.messages == ()
    assert core.metrics.dropped["unknown_sender"] == 1
    # A member of the configuration it carries is heard even if this node lacks it.
    stranger = removed()
    joined = AB.with_member(Member("d"), 1).without("a", 1)
    assert stranger.receive(RemovalNotice(1, "d", joined), 1.0).role is NodeState.TERMINATING


def test_a_heartbeat_from_a_removed_leader_is_answered_with_a_notice() -> None:
    # c led term 1, was stopped, and removed by the next leader: with nothing to say about
    # its configuration, it is told, and judges for itself.
    core = knows_removal()
    [(to, _)] = notices(core.receive(HeartBeat(1, "c"), 1.0))
    assert to == "c"


def test_the_rules_as_pure_functions() -> None:
    assert notice_due(pre_vote(), AB, AB)
    assert not notice_due(pre_vote(), AB_C, AB)  # being added again
    assert not notice_due(pre_vote(), AB, ABC)  # the committed one holds it
    assert not notice_due(pre_vote(configuration=AB_C), AB, AB)  # its own is newer
    assert not notice_due(RemovalNotice(1, "c", AB), AB, AB)  # never answered
    assert leaves_on_notice("c", ABC, AB)
    assert leaves_on_notice("c", AB, AB)  # saved its removal, never heard it commit
    assert not leaves_on_notice("c", AB_C, AB)
    assert not leaves_on_notice("a", ABC, AB)
    assert not leaves_on_notice("d", Configuration(0, 0, (Member("a"), Member("d"))), AB)


def test_a_non_voter_that_hears_no_leader_asks_whether_it_still_is_a_member() -> None:
    core = ElectionCore("d", ["a", "b"], CONFIG, random.Random(1), 0.0, HardState(1, None, AB_D))
    out = core.tick(core.next_deadline)
    assert [(o.to, o.message) for o in out.messages] == [
        ("a", MembershipQuery(1, "d", 1, 3)),
        ("b", MembershipQuery(1, "d", 1, 3)),
    ]
    assert core.role is NodeState.FOLLOWER
    # Removed meanwhile (v4), it is told, and leaves.
    without_d = AB_D.without("d", 1)
    member = follower((AB_D, 3), (without_d, 4))
    [(to, notice)] = notices(member.receive(MembershipQuery(1, "d", 1, 3), 5.0))
    assert (to, notice.configuration) == ("d", without_d)
    assert core.receive(notice, 5.1).role is NodeState.TERMINATING


def test_a_member_answers_a_members_query_with_nothing() -> None:
    core = follower((AB_D, 3))
    # Of a newer term, too: the question is of no term.
    out = core.receive(MembershipQuery(7, "d", 1, 3), 1.0)
    assert out.messages == ()
    assert out.hard_state is None
    assert core.term == 1
    assert sum(core.metrics.dropped.values()) == 0

"""The stickiness checker: no node helps depose a leader it still hears.

A connection that ends is a sign of a crash, not evidence: a core that took it for
evidence, or that campaigned on the answers to its early pre-vote requests before its
own evidence came, would let a node that still hears a healthy leader depose it; so
would one that, after its connection to the leader ended, granted a pre-vote to anyone
but the first in line. The simulator must catch all three, and pass the correct core
under the same faults.
"""

from __future__ import annotations

import collections

from almost_raft import ElectionCore, Output, RequestVoteResponse
from almost_raft.core._leader_down import campaign_turn
from almost_raft.core._messages import RequestVote
from almost_raft.core._quorum import VoteResult, vote_result
from almost_raft.core._state import NodeState
from almost_raft.sim import DEPOSED_HEARD_LEADER, FaultProfile, run_seed
from almost_raft.sim._checker import Checker
from almost_raft.sim._stickiness import StickinessChecker

DURATION = 20.0
VOTERS = frozenset({"a", "b", "c", "d", "e"})
SEEDS = range(20)

# Connections to the leader break often (a blip: it lives on), among partitions and cuts
# that leave some followers unable to hear it, and real crashes of the leader.
BLIPS = FaultProfile(
    mean_gap=0.3,
    weights={
        "disconnect_leader": 3.0,
        "partition": 1.0,
        "cut": 1.0,
        "cut_one_way": 1.0,
        "crash_leader": 1.0,
        "weather": 1.0,
    },
)


class HintAsEvidenceCore(ElectionCore):
    """Takes a connection that ended for proof that the peer's process is gone."""

    def peer_disconnected(self, peer_id: str, now: float) -> Output:
        return self.peer_unreachable(peer_id, now)


class CampaignsOnEarlyGrantsCore(ElectionCore):
    """Campaigns once its early pre-vote requests have a majority, without evidence."""

    def _on_early_answer(self, response: RequestVoteResponse) -> None:
        super()._on_early_answer(response)
        early = self._leader_down._early
        if early is None or self._role is not NodeState.FOLLOWER:
            return
        votes = {self.node_id: True, **early.answers}
        if vote_result(self._voters(), votes) is VoteResult.WON:
            self._become_candidate()


class GrantsEveryoneOnAnEndCore(ElectionCore):
    """After its connection to the leader ended, grants any candidate's pre-vote."""

    def _leader_gone_sign(self, request: RequestVote) -> bool:
        leader = self._leader_id
        return (
            request.pre_vote
            and leader is not None
            and self._leader_down.ended_since(leader, self._term, self._leader_contact)
        )


def _violations(core: type[ElectionCore], profile: FaultProfile | bool) -> collections.Counter[str]:
    kinds: collections.Counter[str] = collections.Counter()
    for seed in SEEDS:
        result = run_seed(seed, duration=DURATION, core_factory=core, faults=profile)
        kinds.update({violation.kind for violation in result.violations})
    return kinds


# ---------------------------------------------------------------------- the checker alone


def _stickiness() -> tuple[Checker, StickinessChecker]:
    checker = Checker()
    return checker, StickinessChecker(checker, election_timeout=0.15)


def test_a_campaign_within_the_timeout_of_a_heartbeat_is_flagged() -> None:
    checker, sticky = _stickiness()
    sticky.heard("a", "b", 3, 10.0)
    sticky.campaigned("a", 4, 10.149, 1.0)
    [violation] = checker.violations
    assert violation.kind == DEPOSED_HEARD_LEADER
    assert "a started an election for term 4" in violation.message
    assert "leader b" in violation.message


def test_a_campaign_after_the_timeout_or_in_another_term_is_not_flagged() -> None:
    checker, sticky = _stickiness()
    sticky.heard("a", "b", 3, 10.0)
    sticky.campaigned("a", 4, 10.15, 1.0)
    sticky.campaigned("a", 6, 10.01, 1.0)  # from term 5: not b's term
    assert checker.violations == []


def test_evidence_or_a_crash_lifts_the_rule_but_a_later_heartbeat_restores_it() -> None:
    checker, sticky = _stickiness()
    sticky.heard("a", "b", 3, 10.0)
    sticky.told_gone("a", "c")  # about another node: no effect
    sticky.granted_pre_vote("a", 3, "c", 4, 10.01, 1.0, VOTERS)
    assert len(checker.violations) == 1
    sticky.told_gone("a", "b")
    sticky.granted_pre_vote("a", 3, "c", 4, 10.02, 1.0, VOTERS)
    sticky.heard("a", "b", 3, 10.03)
    sticky.crashed("a")
    sticky.campaigned("a", 4, 10.04, 1.0)
    assert len(checker.violations) == 1
    sticky.heard("a", "b", 3, 10.05)
    sticky.granted_pre_vote("a", 3, "c", 4, 10.06, 1.0, VOTERS)
    assert len(checker.violations) == 2
    assert "granted c a pre-vote for term 4" in checker.violations[1].message


def _first_in_line(leader: str, term: int) -> str:
    survivors = sorted(VOTERS - {leader})
    return next(n for n in survivors if campaign_turn(survivors, n, term) == 0)


def test_a_connection_end_lifts_the_pre_vote_rule_for_the_first_in_line_alone() -> None:
    checker, sticky = _stickiness()
    first = _first_in_line("b", 3)
    voter = next(n for n in sorted(VOTERS - {"b", first}))
    other = next(n for n in sorted(VOTERS - {"b", first, voter}))
    sticky.heard(voter, "b", 3, 10.0)
    sticky.told_ended(voter, "b", 10.01)
    sticky.granted_pre_vote(voter, 3, first, 4, 10.02, 1.0, VOTERS)
    assert checker.violations == []
    # Not another candidate, not a term further ahead, and never a campaign.
    sticky.granted_pre_vote(voter, 3, other, 4, 10.02, 1.0, VOTERS)
    sticky.granted_pre_vote(voter, 3, first, 5, 10.02, 1.0, VOTERS)
    sticky.campaigned(voter, 4, 10.03, 1.0)
    assert len(checker.violations) == 3
    # A heartbeat after the end restores the rule for the first in line too.
    sticky.heard(voter, "b", 3, 10.04)
    sticky.granted_pre_vote(voter, 3, first, 4, 10.05, 1.0, VOTERS)
    assert len(checker.violations) == 4
    # So does an end with another node.
    sticky.told_ended(voter, other, 10.06)
    sticky.granted_pre_vote(voter, 3, first, 4, 10.07, 1.0, VOTERS)
    assert len(checker.violations) == 5


# ---------------------------------------------------------------------- in the simulator


def test_a_core_that_takes_an_ended_connection_for_evidence_is_caught() -> None:
    assert _violations(HintAsEvidenceCore, True)[DEPOSED_HEARD_LEADER] >= 5


def test_a_core_that_campaigns_on_early_grants_without_evidence_is_caught() -> None:
    assert _violations(CampaignsOnEarlyGrantsCore, BLIPS)[DEPOSED_HEARD_LEADER] >= 1


def test_a_core_that_grants_any_pre_vote_after_a_connection_end_is_caught() -> None:
    assert _violations(GrantsEveryoneOnAnEndCore, BLIPS)[DEPOSED_HEARD_LEADER] >= 1


def test_the_correct_core_asks_early_and_keeps_every_invariant_through_blips() -> None:
    early = 0
    for seed in SEEDS:
        result = run_seed(seed, duration=DURATION, faults=BLIPS)
        assert result.ok, (seed, result.violations)
        early += result.early_pre_votes
    assert early > 50

"""The stickiness checker: no node helps depose a leader it still hears.

A connection that ends is a sign of a crash, not evidence: a core that took it for
evidence, or that campaigned on the answers to its early pre-vote requests before its
own evidence came, would let a node that still hears a healthy leader depose it. The
simulator must catch both, and pass the correct core under the same faults.
"""

from __future__ import annotations

import collections

from almost_raft import ElectionCore, Output, RequestVoteResponse
from almost_raft.core._quorum import VoteResult, vote_result
from almost_raft.core._state import NodeState
from almost_raft.sim import DEPOSED_HEARD_LEADER, FaultProfile, run_seed
from almost_raft.sim._checker import Checker
from almost_raft.sim._stickiness import StickinessChecker

DURATION = 20.0
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
    sticky.granted_pre_vote("a", 3, "c", 4, 10.01, 1.0)
    assert len(checker.violations) == 1
    sticky.told_gone("a", "b")
    sticky.granted_pre_vote("a", 3, "c", 4, 10.02, 1.0)
    sticky.heard("a", "b", 3, 10.03)
    sticky.crashed("a")
    sticky.campaigned("a", 4, 10.04, 1.0)
    assert len(checker.violations) == 1
    sticky.heard("a", "b", 3, 10.05)
    sticky.granted_pre_vote("a", 3, "c", 4, 10.06, 1.0)
    assert len(checker.violations) == 2
    assert "granted c a pre-vote for term 4" in checker.violations[1].message


# ---------------------------------------------------------------------- in the simulator


def test_a_core_that_takes_an_ended_connection_for_evidence_is_caught() -> None:
    assert _violations(HintAsEvidenceCore, True)[DEPOSED_HEARD_LEADER] >= 5


def test_a_core_that_campaigns_on_early_grants_without_evidence_is_caught() -> None:
    assert _violations(CampaignsOnEarlyGrantsCore, BLIPS)[DEPOSED_HEARD_LEADER] >= 1


def test_the_correct_core_asks_early_and_keeps_every_invariant_through_blips() -> None:
    early = 0
    for seed in SEEDS:
        result = run_seed(seed, duration=DURATION, faults=BLIPS)
        assert result.ok, (seed, result.violations)
        early += result.early_pre_votes
    assert early > 50

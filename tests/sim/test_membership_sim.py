"""Membership changes in the simulator, and proof that the checker fails on broken rules.

Leaders add, remove, replace and promote members, and remove members that are down,
while the usual faults strike. The correct core keeps every invariant; a core that
counts votes over its own list of voters, or whose voters ignore the candidate's
configuration, commits two different configurations with one version; a core without
the leader gate, run through the leader-gate transcript, elects two leaders in one term;
a core that never tells a member removed while it was down leaves it running; and one
that tells with a configuration not yet committed makes members leave on it.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from almost_raft import (
    Configuration,
    ElectionConfig,
    ElectionCore,
    HardState,
    PeerMessage,
    RemovalNotice,
    RequestVote,
)
from almost_raft.core._configuration import bootstrap_configuration
from almost_raft.core._membership import Replication
from almost_raft.core._removal import notice_due
from almost_raft.sim import (
    CONFIGURATION_CONFLICT,
    LEFT_UNCOMMITTED,
    MEMBERSHIP_PROFILE,
    REMOVED_MEMBER_STAYS,
    TWO_LEADERS_IN_TERM,
    FaultProfile,
    run_seed,
)
from almost_raft.sim._checker import Checker
from helpers.interaction._env import Env
from helpers.interaction._script import Case, parse

DURATION = 20.0
SEEDS = range(30)

MEMBERSHIP = MEMBERSHIP_PROFILE
# Members removed while they are down, among additions (so there is someone to remove)
# and the usual crashes and weather.
REMOVED_WHILE_DOWN = FaultProfile(
    mean_gap=0.7,
    weights={"remove_down_member": 3.0, "add_member": 3.0, "crash": 1.0, "weather": 1.0},
)

GATE_TRANSCRIPT = Path(__file__).parent.parent / "core" / "testdata" / "membership_leader_gate.txt"


class LocalListCore(ElectionCore):
    """Counts votes over the peers it was started with and ignores configurations in
    votes, as nodes that each keep their own list of voters do."""

    def __init__(
        self,
        node_id: str,
        peers: Iterable[str],
        config: ElectionConfig,
        rng: random.Random,
        now: float,
        hard_state: HardState | None = None,
    ) -> None:
        peers = list(peers)
        self._local = {node_id, *peers}
        super().__init__(node_id, peers, config, rng, now, hard_state)

    def _voters(self) -> set[str]:
        return set(self._local)

    def _configuration_refuses(self, request: RequestVote) -> bool:
        return False


class NoConfigurationCheckCore(ElectionCore):
    """Grants votes without comparing configurations, as a Raft without the log check."""

    def _configuration_refuses(self, request: RequestVote) -> bool:
        return False


class NoLeaderGateCore(ElectionCore):
    """Takes its configuration as committed when it wins, without re-committing it."""

    def _start_replication(self) -> None:
        replication = Replication(self.node_id, self.configuration)
        replication.gate_open = True
        self._replication = replication
        self._committed_version = self.configuration.version


class SilentCore(ElectionCore):
    """Tells no removed member anything, as before removal notices."""

    def _tell_if_removed(self, message: PeerMessage) -> None:
        return None


class UncommittedNoticeCore(ElectionCore):
    """Tells a removed member with its newest configuration, committed or not."""

    def _tell_if_removed(self, message: PeerMessage) -> None:
        ours = self.configuration
        if ours.version > 0 and notice_due(message, ours, ours):
            self._send(message.sender, RemovalNotice(self.term, self.node_id, ours))


def kinds_by_seed(seeds: range = SEEDS, **options: Any) -> collections.Counter[str]:
    options.setdefault("faults", MEMBERSHIP)
    seen: collections.Counter[str] = collections.Counter()
    for seed in seeds:
        result = run_seed(seed, duration=DURATION, spares=2, **options)
        seen.update({violation.kind for violation in result.violations})
    return seen


@pytest.mark.parametrize("nodes", [3, 5])
def test_the_correct_core_keeps_every_invariant_through_membership_changes(nodes: int) -> None:
    committed = 0
    for seed in SEEDS:
        result = run_seed(seed, nodes=nodes, duration=DURATION, spares=2, faults=MEMBERSHIP)
        assert result.violations == (), (seed, result.violations)
        committed += result.configurations_committed
    # The changes really happened: each makes one configuration, or two with the gate.
    assert committed >= 4 * len(SEEDS)


@pytest.mark.parametrize("nodes", [3, 5])
def test_members_removed_while_down_come_back_learn_it_and_leave(nodes: int) -> None:
    seen = kinds_by_seed(nodes=nodes, faults=REMOVED_WHILE_DOWN)
    assert seen == collections.Counter()
    # The same seeds with a core that tells nobody: the removed members run on, unheard.
    silent = kinds_by_seed(nodes=nodes, faults=REMOVED_WHILE_DOWN, core_factory=SilentCore)
    assert set(silent) == {REMOVED_MEMBER_STAYS}
    assert silent[REMOVED_MEMBER_STAYS] >= len(SEEDS) // 2


def test_a_notice_of_an_uncommitted_configuration_makes_members_leave_on_it() -> None:
    seen = kinds_by_seed(range(60), core_factory=UncommittedNoticeCore)
    assert seen[LEFT_UNCOMMITTED] >= 3


def test_counting_votes_over_a_local_list_commits_conflicting_configurations() -> None:
    seen = kinds_by_seed(range(200), core_factory=LocalListCore)
    assert seen[CONFIGURATION_CONFLICT] >= 5


def test_voters_that_ignore_configurations_commit_conflicts_or_elect_two_leaders() -> None:
    # It needs a candidate with an older configuration to win where the check would
    # refuse it, then to change members: rare, so it looks at many seeds.
    seen = kinds_by_seed(range(200), core_factory=NoConfigurationCheckCore)
    assert seen[CONFIGURATION_CONFLICT] + seen[TWO_LEADERS_IN_TERM] >= 3


def run_gate_transcript(core_factory: Any) -> Checker:
    checker = Checker()
    with Env(core_factory, checker) as env:
        for chunk in parse(GATE_TRANSCRIPT.read_text(), GATE_TRANSCRIPT.name):
            if isinstance(chunk, Case):
                env.handle(chunk.command)
    return checker


def test_the_leader_gate_transcript_elects_one_leader_per_term() -> None:
    assert run_gate_transcript(ElectionCore).violations == []


def test_without_the_leader_gate_the_same_steps_elect_two_leaders_in_one_term() -> None:
    violations = run_gate_transcript(NoLeaderGateCore).violations
    assert [v.kind for v in violations] == [TWO_LEADERS_IN_TERM]
    assert "term 3" in violations[0].message


def test_checker_flags_two_member_lists_committed_with_one_version() -> None:
    checker = Checker()
    abc = bootstrap_configuration("a", ["b", "c"])
    two = Configuration(2, 1, abc.members)
    checker.configuration_committed("a", two, 1.0)
    # The same members again (an address aside, or another leader) are no conflict.
    checker.configuration_committed("b", Configuration(2, 3, abc.members), 1.5)
    assert checker.violations == []
    checker.configuration_committed("c", two.without("c", 4), 2.0)  # version 3: fine
    checker.configuration_committed("c", Configuration(2, 4, abc.members[:2]), 2.5)
    [violation] = checker.violations
    assert violation.kind == CONFIGURATION_CONFLICT
    assert "v2" in violation.message


def test_checker_flags_a_member_that_left_on_an_uncommitted_configuration() -> None:
    checker = Checker()
    abc = Configuration(1, 1, bootstrap_configuration("a", ["b", "c"]).members)
    ab = abc.without("c", 1)
    checker.configuration_committed("a", abc, 1.0)
    checker.left_as_removed("c", ab, 1.5)
    [violation] = checker.violations
    assert violation.kind == LEFT_UNCOMMITTED
    checker.configuration_committed("a", ab, 2.0)
    checker.left_as_removed("c", ab, 2.5)
    assert len(checker.violations) == 1


def test_checker_gives_a_removed_member_the_bound_to_leave() -> None:
    checker = Checker()
    ab = Configuration(2, 1, bootstrap_configuration("a", ["b"]).members)
    checker.removed_member_ran("c", ab, 18.0, end=20.0, bound=3.0)
    assert checker.violations == []
    checker.removed_member_ran("c", ab, 16.0, end=20.0, bound=3.0)
    [violation] = checker.violations
    assert violation.kind == REMOVED_MEMBER_STAYS
    assert "c still ran" in violation.message

"""Exclusive leadership in the simulator: drifting clocks, and a checker that can fail.

The correct core keeps two nodes from being exclusive at the same real time with clocks
drifting as far apart as its config allows. Each broken variant below drops one part of
the lease rules, and the checker must catch it on a small fixed set of seeds.
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from almost_raft import ElectionCore
from almost_raft.core._lease import Lease
from almost_raft.sim import DEFAULT_CONFIG, TWO_EXCLUSIVE, FaultProfile, SeedResult, run_seed
from almost_raft.sim._checker import Checker
from almost_raft.sim._clock import NodeClock
from almost_raft.sim._exclusive import ExclusiveChecker

DURATION = 20.0
SEEDS = range(20)

# Leaders step down by hand-over and stay up, are wrongly reported dead, cut off, crashed.
LEASE_FAULTS = FaultProfile(
    mean_gap=0.5,
    weights={
        "step_down_leader": 2.0,
        "false_evidence": 2.0,
        "isolate_leader": 2.0,
        "partition": 1.0,
        "crash_leader": 1.0,
        "weather": 1.0,
    },
)
# Short isolations of the leader: the rest elect a successor while it still holds on.
ISOLATED_LEADERS = FaultProfile(mean_gap=0.5, cut_time=(0.3, 0.6), weights={"isolate_leader": 1.0})
# Clocks far apart, so that a lease that ignores drift outlives the promises it rests on.
WIDE_DRIFT = dataclasses.replace(DEFAULT_CONFIG, max_clock_drift=0.4)


class NoDriftCore(ElectionCore):
    """Takes the followers' promise at face value, as if every clock ran at one rate."""

    def _lease_duration(self) -> float:
        return self.config.election_timeout - self.config.lease_margin


class KeepsLeaseCore(ElectionCore):
    """Hands over but goes on working until its lease would have run out."""

    _handed_over = -1

    def _hand_over(self, to: str | None) -> None:
        self._handed_over = self.term
        super()._hand_over(to)

    def _end_lease(self) -> None:
        if self._lease is not None and self._lease.term == self._handed_over:
            self._lease_keeper = None
        else:
            super()._end_lease()


class EarlyWorkCore(ElectionCore):
    """Starts exclusive work as soon as it wins, though its votes came early."""

    def _become_leader(self) -> None:
        self._exclusive_after = -math.inf
        super()._become_leader()


def exclusive_overlaps(results: list[SeedResult]) -> list[int]:
    return [
        result.seed
        for result in results
        if any(violation.kind == TWO_EXCLUSIVE for violation in result.violations)
    ]


def run(seeds: range = SEEDS, **options: object) -> list[SeedResult]:
    return [run_seed(seed, duration=DURATION, **options) for seed in seeds]  # type: ignore[arg-type]


def test_the_correct_core_is_never_exclusive_twice_under_lease_faults() -> None:
    results = run(faults=LEASE_FAULTS)
    assert [r.violations for r in results if r.violations] == []
    assert sum(r.handovers for r in results) > 20
    assert sum(r.leader_down_reports for r in results) > 20


def test_the_correct_core_survives_the_widest_drift_its_config_allows() -> None:
    results = run(faults=ISOLATED_LEADERS, config=WIDE_DRIFT)
    assert [r.violations for r in results if r.violations] == []


def test_a_lease_without_the_drift_factor_is_caught() -> None:
    seeds = exclusive_overlaps(
        run(faults=ISOLATED_LEADERS, config=WIDE_DRIFT, core_factory=NoDriftCore)
    )
    assert seeds


def test_a_lease_kept_through_a_hand_over_is_caught() -> None:
    assert exclusive_overlaps(run(faults=LEASE_FAULTS, core_factory=KeepsLeaseCore))


def test_exclusive_work_right_after_early_votes_is_caught() -> None:
    # Rarer than the others: it takes a false report of a crash that the voters act on
    # before the live leader's lease runs out.
    assert exclusive_overlaps(run(range(60), faults=LEASE_FAULTS, core_factory=EarlyWorkCore))


def test_clocks_that_drift_past_the_config_break_the_promise() -> None:
    # The same correct core, with clocks drifting four times as far as it was told.
    results = run(
        faults=ISOLATED_LEADERS,
        config=dataclasses.replace(DEFAULT_CONFIG, max_clock_drift=0.1),
        clock_drift=0.45,
    )
    assert exclusive_overlaps(results)


# ----------------------------------------------------------------------------- clocks


def test_drawn_clocks_keep_the_drift_bound() -> None:
    rng = random.Random(7)
    clocks = [NodeClock.drawn(rng, 0.2) for _ in range(200)]
    slowest = min(clock.rate for clock in clocks)
    fastest = max(clock.rate for clock in clocks)
    assert slowest >= 0.9
    assert fastest <= 1.1
    assert slowest / fastest >= 1 - 0.2


@pytest.mark.parametrize("local", [0.1, 1 / 3, 12.345678, 1e6 + 0.1])
def test_a_deadline_has_passed_on_the_node_clock_at_its_real_time(local: float) -> None:
    clock = NodeClock(offset=3.7, rate=0.9000001)
    real = clock.real(local)
    assert clock.local(real) >= local
    # Within a few ulps of the earliest such time.
    earlier = real
    for _ in range(4):
        earlier = math.nextafter(earlier, -math.inf)
    assert clock.local(earlier) < local
    assert clock.real(math.inf) == math.inf


# ----------------------------------------------------------------------------- checker


def two_nodes() -> tuple[Checker, ExclusiveChecker, NodeClock]:
    checker = Checker()
    return checker, ExclusiveChecker(checker), NodeClock(0.0, 1.0)


def test_overlapping_leases_of_two_nodes_are_flagged() -> None:
    checker, exclusive, clock = two_nodes()
    exclusive.lease("a", Lease(1, 0.0, 1.0), clock, 0.0)
    exclusive.lease("b", Lease(2, 0.9, 2.0), clock, 0.9)
    exclusive.finish(3.0)
    assert [v.kind for v in checker.violations] == [TWO_EXCLUSIVE]


def test_a_lease_ended_before_the_next_begins_is_no_overlap() -> None:
    checker, exclusive, clock = two_nodes()
    exclusive.lease("a", Lease(1, 0.0, 1.0), clock, 0.0)
    # a hands over at 0.5: its lease ends there, though it had promised until 1.0.
    exclusive.lease("a", Lease(1, 0.0, 0.5), clock, 0.5)
    exclusive.lease("b", Lease(2, 0.5, 2.0), clock, 0.5)
    exclusive.finish(3.0)
    assert checker.violations == []


def test_a_crash_ends_the_work_of_a_lease() -> None:
    checker, exclusive, clock = two_nodes()
    exclusive.lease("a", Lease(1, 0.0, 1.0), clock, 0.0)
    exclusive.stopped("a", 0.4)
    exclusive.lease("b", Lease(2, 0.5, 2.0), clock, 0.5)
    exclusive.finish(3.0)
    assert checker.violations == []


def test_work_starts_when_the_lease_is_learned_and_after_a_lapse_only_when_renewed() -> None:
    checker, exclusive, clock = two_nodes()
    exclusive.lease("a", Lease(1, 0.0, 1.0), clock, 0.0)
    # b holds a lease from 1.0 to 1.5; a's lapsed at 1.0 and is renewed only at 1.6.
    exclusive.lease("b", Lease(2, 1.0, 1.5), clock, 1.0)
    exclusive.lease("a", Lease(1, 0.0, 2.0), clock, 1.6)
    exclusive.finish(3.0)
    assert checker.violations == []

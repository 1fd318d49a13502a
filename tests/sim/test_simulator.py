"""The simulator: determinism, faithful crashes, liveness, the command line, and the
correct core passing a fixed set of seeds."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from almost_raft import HardState, MemoryStore
from almost_raft.sim import (
    DEFAULT_CONFIG,
    NO_LEADER_AFTER_HEAL,
    FaultProfile,
    SeedResult,
    Violation,
    liveness_bound,
    quiet_logs,
    run_seed,
)
from almost_raft.sim.__main__ import format_summary, main
from almost_raft.sim._batch import Summary, run_seeds

# The correct core on 250 seeds of the full default run: a minute of simulated time,
# crashes, partitions, loss, delay and duplicates, then a heal.
CORRECT_SEEDS = range(250)


class RecordingStore(MemoryStore):
    """A memory store that remembers what every restart found in it."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[HardState | None] = []

    def load(self) -> HardState | None:
        state = super().load()
        self.loaded.append(state)
        return state


# ---------------------------------------------------------------------- determinism


def test_the_same_seed_replays_the_same_trace() -> None:
    first = run_seed(7, duration=20.0, trace=True)
    second = run_seed(7, duration=20.0, trace=True)
    assert first.trace_digest is not None
    assert first.trace_digest == second.trace_digest
    assert first == second


def test_different_seeds_give_different_traces() -> None:
    digests = {run_seed(seed, duration=5.0, trace=True).trace_digest for seed in range(5)}
    assert len(digests) == 5


def test_a_trace_does_not_depend_on_the_process_hash_seed() -> None:
    code = (
        "from almost_raft.sim import run_seed; "
        "print(run_seed(3, duration=10.0, trace=True).trace_digest)"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        completed = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(completed.stdout.strip())
    assert digests == {run_seed(3, duration=10.0, trace=True).trace_digest}


def test_tracing_does_not_change_the_run() -> None:
    traced = run_seed(11, duration=10.0, trace=True)
    plain = run_seed(11, duration=10.0)
    assert plain.trace_digest is None
    assert plain.events == traced.events
    assert plain.elections_won == traced.elections_won


# ---------------------------------------------------------------------- the simulated world


def test_a_healthy_cluster_elects_one_leader_that_keeps_its_term() -> None:
    result = run_seed(1, duration=30.0, faults=False)
    assert result.ok
    assert result.heal_at == 0.0
    assert result.crashes == 0
    assert result.elections_won == 1
    assert result.leader_changes == 1
    assert result.leader_after_heal is not None
    assert result.leader_after_heal < DEFAULT_CONFIG.election_timeout_range[1] * 2
    # A leader heartbeats every 50 ms to four peers, and each answers.
    assert result.messages_sent > 30.0 / 0.05 * 4 * 2 * 0.9


def test_a_restarted_node_recovers_its_term_and_vote_from_its_store() -> None:
    stores: list[RecordingStore] = []

    def store_factory() -> RecordingStore:
        stores.append(RecordingStore())
        return stores[-1]

    crashes_only = FaultProfile(weights={"crash": 1.0, "crash_leader": 1.0})
    result = run_seed(5, duration=30.0, faults=crashes_only, store_factory=store_factory)
    assert result.ok
    assert result.crashes > 5
    loads = [state for store in stores for state in store.loaded]
    # Every node loads once at start and once per restart.
    assert len(loads) == len(stores) + result.crashes
    assert any(state is not None and state.term > 0 for state in loads)


def test_without_persistence_a_restart_finds_nothing() -> None:
    stores: list[RecordingStore] = []

    def store_factory() -> RecordingStore:
        stores.append(RecordingStore())
        return stores[-1]

    crashes_only = FaultProfile(weights={"crash_leader": 1.0})
    run_seed(5, duration=30.0, faults=crashes_only, store_factory=store_factory, persist=False)
    assert all(state is None for store in stores for state in store.loaded)


def test_a_fault_phase_ends_in_a_heal_that_leaves_time_for_the_bound() -> None:
    result = run_seed(2)
    assert result.simulated_seconds == 60.0
    assert result.heal_at == 45.0
    assert result.liveness_bound == liveness_bound(DEFAULT_CONFIG, 0.002)
    short = run_seed(2, duration=8.0)
    assert 8.0 - short.heal_at >= short.liveness_bound


def test_a_cluster_too_small_for_a_majority_after_the_heal_is_reported() -> None:
    # Five nodes that each wait for six peers before campaigning never elect.
    config = dataclasses.replace(DEFAULT_CONFIG, min_peers=6)
    result = run_seed(0, nodes=5, duration=10.0, config=config, faults=False)
    assert [violation.kind for violation in result.violations] == [NO_LEADER_AFTER_HEAL]


def test_a_single_node_elects_itself() -> None:
    result = run_seed(0, nodes=1, duration=5.0)
    assert result.ok
    assert result.elections_won >= 1


def test_run_seed_rejects_impossible_options() -> None:
    with pytest.raises(ValueError, match="nodes"):
        run_seed(0, nodes=0)
    with pytest.raises(ValueError, match="duration"):
        run_seed(0, duration=0.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weights": {"meteor": 1.0}}, "unknown fault kinds"),
        ({"weights": {"crash": -1.0}}, "negative"),
        ({"mean_gap": 0.0}, "mean_gap"),
        ({"downtime": (2.0, 1.0)}, "downtime"),
        ({"max_drop_rate": 1.0}, "max_drop_rate"),
        ({"max_delay": 0.0001}, "max_delay"),
    ],
)
def test_a_fault_profile_rejects_bad_values(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultProfile(**options)  # type: ignore[arg-type]


def test_quiet_logs_silences_below_error_and_restores_the_level() -> None:
    logger = logging.getLogger("almost_raft")
    before = logger.level
    with quiet_logs():
        assert not logging.getLogger("almost_raft.core").isEnabledFor(logging.WARNING)
        assert logging.getLogger("almost_raft.core").isEnabledFor(logging.ERROR)
    assert logger.level == before


# ---------------------------------------------------------------------- the correct core


def test_the_correct_core_keeps_every_invariant_on_a_fixed_set_of_seeds() -> None:
    summary = run_seeds(CORRECT_SEEDS)
    assert summary.violations_by_kind == {}, summary.first_violations
    assert summary.seeds == len(CORRECT_SEEDS)
    # Every seed found a leader after its heal, well inside the bound.
    assert len(summary.leader_after_heal) == len(CORRECT_SEEDS)
    assert max(summary.leader_after_heal) < summary.liveness_bound / 2
    # The faults really happened.
    assert summary.crashes > 10 * len(CORRECT_SEEDS)
    assert summary.elections_won > 5 * len(CORRECT_SEEDS)


def test_the_correct_core_elects_promptly_from_a_cold_start() -> None:
    results = [run_seed(seed, duration=3.0, faults=False) for seed in range(200)]
    assert all(result.ok for result in results)
    times = sorted(result.leader_after_heal or 0.0 for result in results)
    assert times[0] >= DEFAULT_CONFIG.election_timeout
    assert times[-1] < liveness_bound(DEFAULT_CONFIG, 0.002) / 2


# ---------------------------------------------------------------------- many seeds at once


def test_worker_processes_give_the_same_totals_as_one_process() -> None:
    alone = run_seeds(range(6), duration=5.0).as_dict()
    spread = run_seeds(range(6), jobs=2, duration=5.0)
    assert spread.jobs == 2
    same = ("seeds", "events", "elections_won", "crashes", "leader_after_heal_seconds")
    assert {key: spread.as_dict()[key] for key in same} == {key: alone[key] for key in same}


def test_a_summary_names_the_lowest_failing_seeds() -> None:
    summary = Summary()
    for seed in range(30, 0, -1):
        violations = (Violation("double_vote", f"seed {seed}", 1.5),) if seed % 2 else ()
        summary.add(_result(seed, violations))
    assert summary.failing_seeds == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    assert set(summary.first_violations) == set(summary.failing_seeds)
    assert summary.violations_by_kind == {"double_vote": 15}
    text = format_summary(summary, first_seed=1, duration=60.0)
    assert "double_vote 15" in text
    assert "  1: double_vote at 1.500s: seed 1" in text


def test_the_command_prints_a_summary_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "out" / "sim.json"
    arguments = ["--seeds", "3", "--seed-start", "10", "--duration", "5", "--jobs", "1"]
    status = main([*arguments, "--json", str(report)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "3 (10..12), 5 nodes, 5 simulated s each" in printed
    assert "violations:         none" in printed
    assert "seeds/min" in printed
    data = json.loads(report.read_text())
    assert data["seeds"] == 3
    assert data["first_seed"] == 10
    assert data["node_seconds"] == pytest.approx(75.0)
    assert data["violations_by_kind"] == {}


def test_the_command_rejects_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--duration", "0"])
    assert raised.value.code == 2
    assert "--duration" in capsys.readouterr().err


def _result(seed: int, violations: tuple[Violation, ...]) -> SeedResult:
    return SeedResult(
        seed=seed,
        nodes=5,
        simulated_seconds=60.0,
        heal_at=45.0,
        elections_started=1,
        elections_won=1,
        pre_votes_started=1,
        leader_changes=1,
        crashes=0,
        messages_sent=10,
        handovers=0,
        leader_down_reports=0,
        events=10,
        highest_term=1,
        leader_after_heal=0.2,
        liveness_bound=3.0,
        violations=violations,
    )


def test_hand_overs_and_crash_evidence_are_exercised_and_stay_safe() -> None:
    profile = FaultProfile(weights={"shutdown_leader": 2.0, "false_evidence": 1.0, "crash": 1.0})
    results = [run_seed(seed, duration=20.0, faults=profile) for seed in range(5)]
    assert all(result.ok for result in results), [r.violations for r in results]
    assert sum(result.handovers for result in results) > 0
    assert sum(result.leader_down_reports for result in results) > 0


def test_a_leader_that_shuts_down_cleanly_is_seldom_taken_for_a_crash() -> None:
    # A leaving leader stays until its successor leads, so by the time its connections
    # close the others follow the successor and the evidence concerns no leader of
    # theirs. A leader that exited right after its hand-over would be reported down by
    # its followers about once per shutdown.
    profile = FaultProfile(weights={"shutdown_leader": 1.0})
    results = [run_seed(seed, duration=20.0, faults=profile) for seed in range(8)]
    assert all(result.ok for result in results), [r.violations for r in results]
    handovers = sum(result.handovers for result in results)
    reports = sum(result.leader_down_reports for result in results)
    assert handovers > 20
    assert reports < handovers / 2, (reports, handovers)

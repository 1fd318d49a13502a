"""The simulator's operator keeps up every process the cluster still needs.

Liveness after the heal is checked only over what an operator would run: a node that
learned it was removed stays down until it is named again. Two scripted runs, each one
a failing seed's story cut down to its few steps, show the operator keeping a voter's
process down with nobody able to lead without it: a leader shut down cleanly while its
own removal was pending (seed 50925 of ``--membership``), and a member added back that
left on an older committed configuration and was asked to be promoted while down (seed
50564). A promotion now waits until the member answers, so in the second the leader
keeps leading, and the operator must still start the member for the promotion to end.
"""

from __future__ import annotations

from collections.abc import Callable

from almost_raft import ElectionCore, MemoryStore
from almost_raft.sim import DEFAULT_CONFIG, FaultProfile, SeedResult, quiet_logs, run_seed
from almost_raft.sim._schedule import MEMBERSHIP_PROFILE, Fault
from almost_raft.sim._simulation import Simulation

# No drawn faults: only the script's steps happen, on a calm network.
SCRIPTED = FaultProfile(weights={})
DURATION = 20.0

Step = Callable[[Simulation, dict[str, str], float], None]


def run_script(nodes: int, steps: list[tuple[float, Step]], spares: int = 0) -> SeedResult:
    """Run ``nodes`` (and ``spares``) with ``steps`` carried out at their times.

    A step gets the simulation, the names the script has given nodes so far (the
    leader of the moment is only known at run time), and the time.
    """
    sim = Simulation(
        1,
        nodes,
        spares,
        DURATION,
        DEFAULT_CONFIG,
        ElectionCore,
        MemoryStore,
        True,
        True,
        SCRIPTED,
        False,
        DEFAULT_CONFIG.max_clock_drift,
    )
    names: dict[str, str] = {}
    for when, step in steps:
        assert when < sim.heal_at, "the script runs before the heal"
        sim._push(when, lambda now, step: step(sim, names, now), step)
    with quiet_logs():
        return sim.run()


def leader(sim: Simulation) -> str:
    node = sim._newest_leader()
    assert node is not None, "the script expects a leader here"
    return node.id


def apply(sim: Simulation, fault: Fault, now: float) -> None:
    sim.faults.apply(fault, now)


def test_a_leader_shut_down_while_its_own_removal_is_pending_is_started_again() -> None:
    # Two voters: the leader asks to remove itself, its heartbeats to the other are
    # lost, and it is shut down for a moment before the removal commits. The other
    # cannot win alone in the configuration it holds, which names both; only the
    # stopped node, once back, can finish the removal (thesis 4.2.2).
    def remove_and_stop(sim: Simulation, names: dict[str, str], now: float) -> None:
        names["leader"] = chief = leader(sim)
        other = next(node.id for node in sim.nodes if node.id != chief)
        apply(sim, Fault("cut_one_way", (chief, other), lasts=1.0), now)
        apply(sim, Fault("member_remove", (chief,)), now)
        apply(sim, Fault("shutdown", (chief,), lasts=0.5), now + 0.01)

    result = run_script(2, [(2.0, remove_and_stop)])
    assert result.violations == ()
    assert result.leader_after_heal is not None


def test_a_member_added_back_that_left_on_an_older_commit_is_started_when_needed() -> None:
    # L ends up the only voter; B, removed and added back as a non-voter, is cut off
    # and still knows only the configuration that removed C. C, added back too, starts
    # from the state that says it was removed, reaches only B, is told that it was
    # (true, but older than C's return), and leaves. The operator then asks to promote
    # C, which is down: the promotion waits for C to answer (made at once, L could not
    # keep or win leadership without C), and ends only once the operator starts C.
    def remove_twice(sim: Simulation, names: dict[str, str], now: float) -> None:
        names["L"] = chief = leader(sim)
        names["B"], names["C"] = sorted(node.id for node in sim.nodes if node.id != chief)
        apply(sim, Fault("member_remove", (names["C"],)), now)
        apply(sim, Fault("member_remove", (names["B"],)), now + 1.0)

    def add_b_back(sim: Simulation, names: dict[str, str], now: float) -> None:
        apply(sim, Fault("member_add_non_voter", (names["B"],)), now)

    def add_c_back_cut_off(sim: Simulation, names: dict[str, str], now: float) -> None:
        chief, b, c = names["L"], names["B"], names["C"]
        for one, two in ((chief, b), (chief, c)):
            apply(sim, Fault("cut", (one, two), lasts=2.0), now)
        apply(sim, Fault("member_add_non_voter", (c,)), now + 0.01)

    def promote_c(sim: Simulation, names: dict[str, str], now: float) -> None:
        apply(sim, Fault("member_promote", (names["C"],)), now)

    result = run_script(
        3,
        [(1.0, remove_twice), (3.0, add_b_back), (4.0, add_c_back_cut_off), (4.5, promote_c)],
    )
    assert result.violations == ()
    assert result.leader_after_heal is not None
    # L led throughout: the one election is the first.
    assert (result.elections_won, result.highest_term) == (1, 1)


def test_the_two_membership_seeds_that_kept_a_needed_voter_down_now_heal() -> None:
    for seed in (50564, 50925):
        result = run_seed(seed, spares=2, faults=MEMBERSHIP_PROFILE)
        assert result.violations == (), (seed, result.violations)

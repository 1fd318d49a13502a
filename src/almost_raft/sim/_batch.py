"""Many seeds at once: spread over processes, added up into one summary."""

from __future__ import annotations

import collections
import dataclasses
import functools
import multiprocessing
import statistics
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ._result import SeedResult
from ._run import run_seed

__all__ = ["Summary", "run_seeds"]

# How many failing seeds a summary names, so they can be replayed one by one.
_FAILING_SEEDS_SHOWN = 10


@dataclasses.dataclass(slots=True)
class Summary:
    """The sum of many :class:`SeedResult` s.

    Attributes:
        seeds: how many seeds ran.
        nodes: the cluster size.
        simulated_seconds: simulated time, summed over the seeds.
        elections_started: real elections started (term raised).
        elections_won: elections that made a leader.
        pre_votes_started: pre-vote rounds started.
        leader_changes: leader changes (see :attr:`SeedResult.leader_changes`).
        crashes: node crashes.
        handovers: leadership hand-overs acted on.
        leader_down_reports: times a follower acted on evidence that its leader was gone.
        early_pre_votes: pre-vote requests sent early, when a connection to the
            leader ended (see :attr:`SeedResult.early_pre_votes`).
        events: events handled.
        highest_term: the highest term reached in any seed.
        violations_by_kind: how many seeds broke each kind of invariant.
        failing_seeds: the lowest seeds that broke any invariant (at most ten).
        first_violations: the first violation of each of those seeds.
        leader_after_heal: every seed's time from the heal to an agreed leader.
        liveness_bound: the bound those times were checked against.
        wall_seconds: real time taken.
        jobs: worker processes used.
    """

    seeds: int = 0
    nodes: int = 0
    simulated_seconds: float = 0.0
    elections_started: int = 0
    elections_won: int = 0
    pre_votes_started: int = 0
    leader_changes: int = 0
    crashes: int = 0
    handovers: int = 0
    leader_down_reports: int = 0
    early_pre_votes: int = 0
    events: int = 0
    highest_term: int = 0
    violations_by_kind: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    failing_seeds: list[int] = dataclasses.field(default_factory=list)
    first_violations: dict[int, str] = dataclasses.field(default_factory=dict)
    leader_after_heal: list[float] = dataclasses.field(default_factory=list)
    liveness_bound: float = 0.0
    wall_seconds: float = 0.0
    jobs: int = 1

    @property
    def node_seconds(self) -> float:
        """Simulated seconds times the cluster size."""
        return self.simulated_seconds * self.nodes

    @property
    def ok(self) -> bool:
        """Whether no seed broke an invariant."""
        return not self.violations_by_kind

    def add(self, result: SeedResult) -> None:
        """Count one seed's result in."""
        self.seeds += 1
        self.nodes = result.nodes
        self.simulated_seconds += result.simulated_seconds
        self.elections_started += result.elections_started
        self.elections_won += result.elections_won
        self.pre_votes_started += result.pre_votes_started
        self.leader_changes += result.leader_changes
        self.crashes += result.crashes
        self.handovers += result.handovers
        self.leader_down_reports += result.leader_down_reports
        self.early_pre_votes += result.early_pre_votes
        self.events += result.events
        self.highest_term = max(self.highest_term, result.highest_term)
        self.liveness_bound = result.liveness_bound
        if result.leader_after_heal is not None:
            self.leader_after_heal.append(result.leader_after_heal)
        if result.violations:
            for kind in {violation.kind for violation in result.violations}:
                self.violations_by_kind[kind] += 1
            first = result.violations[0]
            self.failing_seeds.append(result.seed)
            self.failing_seeds.sort()
            text = f"{first.kind} at {first.time:.3f}s: {first.message}"
            self.first_violations[result.seed] = text
            for dropped in self.failing_seeds[_FAILING_SEEDS_SHOWN:]:
                self.first_violations.pop(dropped, None)
            del self.failing_seeds[_FAILING_SEEDS_SHOWN:]

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values, with the derived rates."""
        times = sorted(self.leader_after_heal)
        return {
            "seeds": self.seeds,
            "nodes": self.nodes,
            "simulated_seconds": self.simulated_seconds,
            "node_seconds": self.node_seconds,
            "elections_started": self.elections_started,
            "elections_won": self.elections_won,
            "pre_votes_started": self.pre_votes_started,
            "leader_changes": self.leader_changes,
            "crashes": self.crashes,
            "handovers": self.handovers,
            "leader_down_reports": self.leader_down_reports,
            "early_pre_votes": self.early_pre_votes,
            "events": self.events,
            "highest_term": self.highest_term,
            "violations_by_kind": dict(sorted(self.violations_by_kind.items())),
            "failing_seeds": self.failing_seeds,
            "first_violations": {str(seed): text for seed, text in self.first_violations.items()},
            "leader_after_heal_seconds": _distribution(times),
            "liveness_bound_seconds": self.liveness_bound,
            "wall_seconds": self.wall_seconds,
            "jobs": self.jobs,
            "seeds_per_minute": self.seeds / self.wall_seconds * 60 if self.wall_seconds else 0.0,
            "node_seconds_per_wall_second": (
                self.node_seconds / self.wall_seconds if self.wall_seconds else 0.0
            ),
        }


def run_seeds(seeds: Iterable[int], *, jobs: int = 1, **options: Any) -> Summary:
    """Run :func:`run_seed` for every seed and add the results up.

    Args:
        seeds: the seeds to run.
        jobs: worker processes; 1 runs in this process.
        options: passed to :func:`run_seed` (they must pickle when ``jobs`` > 1).

    Returns:
        The summary, with ``wall_seconds`` measured around the whole batch.
    """
    summary = Summary(jobs=jobs)
    started = time.perf_counter()
    for result in _results(list(seeds), jobs, options):
        summary.add(result)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _results(seeds: list[int], jobs: int, options: dict[str, Any]) -> Iterator[SeedResult]:
    work = functools.partial(run_seed, **options)
    if jobs <= 1:
        yield from map(work, seeds)
        return
    # Chunks big enough that pickling stays negligible, small enough to balance the load.
    chunk = max(1, min(50, len(seeds) // (jobs * 8)))
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        yield from pool.imap_unordered(work, seeds, chunksize=chunk)


def _distribution(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    cuts = statistics.quantiles(times, n=1000, method="inclusive") if len(times) > 1 else []
    return {
        "count": len(times),
        "mean": statistics.fmean(times),
        "p50": statistics.median(times),
        "p99": cuts[989] if cuts else times[0],
        "p999": cuts[998] if cuts else times[0],
        "max": times[-1],
    }

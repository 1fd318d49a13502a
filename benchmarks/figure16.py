"""Figure 16 of the Raft paper: how long a 5-node cluster takes to replace a silent leader.

    .venv/bin/python benchmarks/figure16.py --trials 200     # about 25 minutes
    .venv/bin/python benchmarks/figure16.py --long           # 1000 trials per range
    .venv/bin/python benchmarks/figure16.py --quick          # under a minute

For each range of election timeouts (150-151, 150-155, 150-175, 150-200, 150-300 and
12-24 ms; heartbeat a third of the minimum: 50 ms, and 4 ms for 12-24) the leader fails
silently at a random moment of its heartbeat interval, and the trial measures the time
until a new leader is elected and until every live node knows it. Three variants:

- ``sim``: the election cores in simulated time (no runtime, no scheduling noise), on a
  network whose one-way delay is uniform in 0.2-2 ms; the leader is cut off with
  ``NetworkFaults.isolate``. ``sim-paper-net`` is the same with 5-10 ms one-way, about
  the 15 ms broadcast time of the paper's cluster.
- ``asyncio``: five :class:`Election` objects in this process on the in-memory network
  (0.2-2 ms), real asyncio time, so the runtime's own overhead is included; the leader is
  isolated, which it cannot tell from a partition.
- ``tcp``: five ``almost-raft run`` processes over TCP; the leader gets SIGSTOP, so its
  sockets stay open and nothing tells the others (SIGKILL would: see failover.py). The
  nodes keep their term and vote in files, so every vote waits for an fsync.

A trial is a split vote if the first term after the failure elected no one, so another
term was needed. Separately, a trial is contested if more than one live node campaigned
(two candidates in one term, one of which still won, costs no extra round). Writes
``benchmarks/results/figure16.json`` and one CDF plot per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    ideal_failover,
    machine,
    plot_cdfs,
    summarize,
    table,
    write_json,
)
from _process_trials import run_trials

from almost_raft import Election, ElectionConfig, ElectionCore, InMemoryNetwork, NetworkFaults
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

NODES = 5
RANGES_MS: list[tuple[int, int]] = [
    (150, 151),
    (150, 155),
    (150, 175),
    (150, 200),
    (150, 300),
    (12, 24),
]
LOOPBACK_DELAY = (0.0002, 0.002)
PAPER_DELAY = (0.005, 0.010)
VARIANTS = ("sim", "sim-paper-net", "asyncio", "tcp")


def heartbeat_ms(low_ms: int) -> int:
    """A third of the minimum election timeout, in whole milliseconds."""
    return max(1, low_ms // 3)


def config_for(low_ms: int, high_ms: int) -> ElectionConfig:
    """The election config of one range."""
    return ElectionConfig(
        election_timeout=low_ms / 1000,
        election_timeout_max=high_ms / 1000,
        heartbeat_interval=heartbeat_ms(low_ms) / 1000,
        message_timeout=low_ms / 1000,
        # Below the timeout, as the config requires; silent failures never use it.
        leader_down_delay=min(0.02, low_ms / 2000),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Failover:
    """One trial, in seconds after the leader failed (``None``: no leader in time)."""

    elected: float | None
    all_know: float | None
    split: bool
    contested: bool


# ---------------------------------------------------------------------- simulated time


def sim_trial(
    seed: int, config: ElectionConfig, delay: tuple[float, float], settle: float = 0.5
) -> Failover:
    """One failover of ``NODES`` cores in simulated time.

    The cluster elects a first leader, runs ``settle`` seconds plus a random part of a
    heartbeat interval, and then the leader is isolated: it keeps running (and leading,
    until CheckQuorum), but nothing it sends or is sent arrives.
    """
    rng = random.Random(seed)
    ids = [f"n{i}" for i in range(1, NODES + 1)]
    faults = NetworkFaults(random.Random(rng.random()), delay=delay)
    cores = {n: ElectionCore(n, ids, config, random.Random(rng.random()), 0.0) for n in ids}
    views: dict[str, tuple[str | None, int]] = dict.fromkeys(ids, (None, 0))
    adopted: dict[str, float] = {}
    timers = dict.fromkeys(ids, math.inf)
    heap: list[tuple[float, int, str, object]] = []
    order = itertools.count()

    def carry_out(node: str, output: Any, now: float) -> None:
        for outbound in output.messages:
            for late in faults.deliveries(node, outbound.to):
                heapq.heappush(heap, (now + late, next(order), outbound.to, outbound.message))
        if output.leader_change is not None:
            change = output.leader_change
            views[node] = (change.leader_id, change.term)
            adopted[node] = now
        deadline = output.next_deadline
        if deadline != timers[node]:
            timers[node] = deadline
            if math.isfinite(deadline):
                heapq.heappush(heap, (deadline, next(order), node, None))

    for node in ids:
        timers[node] = cores[node].next_deadline
        heapq.heappush(heap, (timers[node], next(order), node, None))

    def run_until(condition: Callable[[], bool], limit: float) -> float:
        now = 0.0
        while heap and not condition():
            now, _, node, message = heapq.heappop(heap)
            if now > limit:
                return math.inf
            core = cores[node]
            if message is None:
                if now != timers[node]:
                    continue  # a tick for a deadline that has since moved
                timers[node] = math.inf
                carry_out(node, core.tick(now), now)
            else:
                carry_out(node, core.receive(message, now), now)  # type: ignore[arg-type]
        return now

    def agreed(nodes: Sequence[str]) -> tuple[str, int] | None:
        seen = {views[n] for n in nodes}
        if len(seen) == 1:
            ((leader, term),) = seen
            if leader is not None and leader in nodes:
                return leader, term
        return None

    now = run_until(lambda: agreed(ids) is not None, 60.0)
    while True:
        # With timeouts close to the message delay a leader can be replaced on its own;
        # the crash must hit the leader everyone knows at that instant.
        crash_at = now + settle + rng.uniform(0, config.heartbeat_interval)

        def reached(at: float = crash_at) -> bool:
            return bool(heap) and heap[0][0] >= at

        run_until(reached, math.inf)
        found = agreed(ids)
        if found is not None:
            break
        now = run_until(lambda: agreed(ids) is not None, crash_at + 60.0)
        assert math.isfinite(now), f"seed {seed}: the cluster never agreed on a leader"
    leader, term = found
    live = [n for n in ids if n != leader]
    campaigns_before = sum(cores[n].metrics.elections_started for n in live)
    faults.isolate(leader)

    def newer() -> bool:
        found = agreed(live)
        return found is not None and found[1] > term

    end = run_until(newer, crash_at + 60.0)
    if not math.isfinite(end):
        return Failover(None, None, True, True)
    new_leader, new_term = views[live[0]]
    assert new_leader is not None
    campaigns = sum(cores[n].metrics.elections_started for n in live) - campaigns_before
    return Failover(
        elected=adopted[new_leader] - crash_at,
        all_know=max(adopted[n] for n in live) - crash_at,
        split=new_term - term > 1,
        contested=campaigns > 1,
    )


def run_sim(
    config: ElectionConfig, trials: int, delay: tuple[float, float], seed: int
) -> list[Failover]:
    """``trials`` simulated failovers, seeds ``seed`` ... ``seed + trials - 1``."""
    logging.getLogger("almost_raft").setLevel(logging.ERROR)
    return [sim_trial(seed + index, config, delay) for index in range(trials)]


# ---------------------------------------------------------------------- real asyncio time


async def run_asyncio(config: ElectionConfig, trials: int, seed: int) -> list[Failover]:
    """``trials`` failovers of ``NODES`` Elections in this event loop (real time)."""
    logging.getLogger("almost_raft").setLevel(logging.ERROR)
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    ids = [f"n{i}" for i in range(1, NODES + 1)]
    network = InMemoryNetwork(NetworkFaults(random.Random(rng.random()), delay=LOOPBACK_DELAY))
    elections = {
        n: Election(n, ids, network.transport(n), config=config, rng=random.Random(rng.random()))
        for n in ids
    }
    views: dict[str, tuple[str | None, int]] = dict.fromkeys(ids, (None, 0))
    adopted: dict[str, float] = {}
    changed = asyncio.Event()

    async def watch(node: str) -> None:
        async for change in elections[node].leadership_changes():
            views[node] = (change.leader_id, change.term)
            adopted[node] = loop.time()
            changed.set()

    def agreed(nodes: Sequence[str]) -> tuple[str, int] | None:
        seen = {views[n] for n in nodes}
        if len(seen) == 1:
            ((leader, term),) = seen
            if leader is not None and leader in nodes:
                return leader, term
        return None

    async def wait(condition: Callable[[], tuple[str, int] | None], deadline: float) -> bool:
        try:
            async with asyncio.timeout(deadline):
                while condition() is None:
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            return False
        return True

    def campaigns(nodes: Sequence[str]) -> int:
        return sum(elections[n].metrics().elections_started for n in nodes)

    results: list[Failover] = []
    for election in elections.values():
        await election.start()
    watchers = [asyncio.create_task(watch(n)) for n in ids]
    try:
        while len(results) < trials:
            if not await wait(lambda: agreed(ids), 30.0):
                raise TimeoutError("the in-process cluster did not agree on a leader")
            await asyncio.sleep(0.2 + rng.uniform(0, config.heartbeat_interval))
            before = agreed(ids)
            if before is None:
                continue
            leader, term = before
            live = [n for n in ids if n != leader]
            campaigns_before = campaigns(live)
            crash_at = loop.time()
            network.faults.isolate(leader)

            def newer(live: list[str] = live, term: int = term) -> tuple[str, int] | None:
                found = agreed(live)
                return found if found is not None and found[1] > term else None

            if await wait(newer, 10.0):
                new_leader, new_term = views[live[0]]
                assert new_leader is not None
                results.append(
                    Failover(
                        elected=adopted[new_leader] - crash_at,
                        all_know=max(adopted[n] for n in live) - crash_at,
                        split=new_term - term > 1,
                        contested=campaigns(live) - campaigns_before > 1,
                    )
                )
            else:
                results.append(Failover(None, None, True, True))
            network.faults.heal()
    finally:
        for election in elections.values():
            await election.close(hand_over=False)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return results


# ---------------------------------------------------------------------- processes over TCP


def run_tcp(
    low_ms: int, high_ms: int, trials: int, seed: int, state_dir: Path | None
) -> tuple[list[Failover], list[float]]:
    """``trials`` SIGSTOP failovers of ``NODES`` processes; also each clean election's
    cost from the first pre-vote until all knew, for the best case."""
    timings = ClusterTimings(
        election_timeout_ms=low_ms,
        election_timeout_max_ms=high_ms,
        heartbeat_interval_ms=heartbeat_ms(low_ms),
        message_timeout_ms=low_ms,
    )
    with ProcessCluster(NODES, timings=timings, parent=state_dir) as cluster:
        run = run_trials(
            cluster,
            signal.SIGSTOP,
            trials,
            heartbeat=heartbeat_ms(low_ms) / 1000,
            settle=0.3,
            rng=random.Random(seed),
        )
    failovers = [Failover(t.elected, t.all_know, t.split, t.contested) for t in run.trials]
    failovers += [Failover(None, None, True, True)] * run.timed_out
    clean = [
        t.all_know - t.first_prevote
        for t in run.trials
        if not t.contested and t.first_prevote is not None
    ]
    return failovers, clean


# ---------------------------------------------------------------------- reporting


def best_case(
    variant: str, low_ms: int, high_ms: int, clean_elections: Sequence[float]
) -> dict[str, float]:
    """The analytic best case of one range: earliest timer plus the election's messages.

    Simulated and in-process: :func:`ideal_failover` with the network's mean one-way delay
    and five one-way delays for the election (pre-vote and vote round trips, then the
    first heartbeat). Over TCP the message cost is not known in advance, so the election
    part is the measured median of trials that needed one round only.
    """
    timeout_range = (low_ms / 1000, high_ms / 1000)
    heartbeat = heartbeat_ms(low_ms) / 1000
    if variant == "tcp":
        timer = ideal_failover(NODES - 1, timeout_range, heartbeat, one_way=0.0, rounds=0)
        election_ms = summarize(clean_elections)["median_ms"]
        return {
            "median_ms": timer["median_ms"] + election_ms,
            "timer_median_ms": timer["median_ms"],
            "election_median_ms": election_ms,
        }
    low, high = PAPER_DELAY if variant == "sim-paper-net" else LOOPBACK_DELAY
    return ideal_failover(NODES - 1, timeout_range, heartbeat, one_way=(low + high) / 2, rounds=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per range")
    parser.add_argument("--long", action="store_true", help="1000 trials per range")
    parser.add_argument("--quick", action="store_true", help="a few trials, under a minute")
    parser.add_argument("--variant", choices=VARIANTS, action="append")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--state-dir", type=Path, help="where the tcp variant's nodes keep state")
    args = parser.parse_args()
    if args.long:
        args.trials = 1000
    variants = args.variant or list(VARIANTS)

    info = machine()
    print(
        f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_at_start']}"
    )
    results: dict[str, Any] = {"machine": info, "variants": {}}
    for variant in variants:
        trials = args.trials
        if args.quick:
            trials = {"sim": 20, "sim-paper-net": 20, "asyncio": 2, "tcp": 2}[variant]
        started = time.monotonic()
        print(f"{variant}: {trials} trials per range", flush=True)
        rows = []
        series: dict[str, list[float]] = {}
        per_range: dict[str, Any] = {}
        for index, (low_ms, high_ms) in enumerate(RANGES_MS):
            seed = args.seed * 1_000_000 + index * 10_000
            config = config_for(low_ms, high_ms)
            clean: list[float] = []
            if variant == "sim":
                failovers = run_sim(config, trials, LOOPBACK_DELAY, seed)
            elif variant == "sim-paper-net":
                failovers = run_sim(config, trials, PAPER_DELAY, seed)
            elif variant == "asyncio":
                failovers = asyncio.run(run_asyncio(config, trials, seed))
            else:
                failovers, clean = run_tcp(low_ms, high_ms, trials, seed, args.state_dir)
            name = f"{low_ms}-{high_ms} ms"
            done = [f for f in failovers if f.all_know is not None]
            know = summarize([f.all_know for f in done if f.all_know is not None])
            elected = summarize([f.elected for f in done if f.elected is not None])
            splits = sum(f.split for f in failovers) / len(failovers)
            contested = sum(f.contested for f in failovers) / len(failovers)
            best = best_case(variant, low_ms, high_ms, clean)
            series[name] = [f.all_know for f in done if f.all_know is not None]
            per_range[name] = {
                "heartbeat_ms": heartbeat_ms(low_ms),
                "all_know": know,
                "elected": elected,
                "split_share": splits,
                "contested_share": contested,
                "no_leader_in_time": len(failovers) - len(done),
                "best_case": best,
                "all_know_seconds": series[name],
            }
            rows.append(
                [
                    name,
                    heartbeat_ms(low_ms),
                    len(failovers),
                    elected["median_ms"],
                    know["median_ms"],
                    know["mean_ms"],
                    know["p99_ms"],
                    know["max_ms"],
                    f"{splits * 100:.1f}%",
                    f"{contested * 100:.0f}%",
                    best["median_ms"],
                    len(failovers) - len(done),
                ]
            )
            print(
                f"  {name}: median {know['median_ms']:.1f} ms, p99 {know['p99_ms']:.1f} ms, "
                f"max {know['max_ms']:.1f} ms, splits {splits * 100:.1f}%",
                flush=True,
            )
        wall = time.monotonic() - started
        results["variants"][variant] = {
            "trials_per_range": trials,
            "wall_seconds": wall,
            "ranges": per_range,
        }
        headers = [
            "timeouts",
            "heartbeat ms",
            "trials",
            "elected median",
            "all know median",
            "mean",
            "p99",
            "max",
            "split votes",
            "contested",
            "best case median",
            "no leader in time",
        ]
        print(f"\n{variant} ({wall:.0f} s), milliseconds after the leader failed:")
        print(table(headers, rows) + "\n", flush=True)
        png = plot_cdfs(
            f"figure16_{variant}" + ("_quick" if args.quick else ""),
            series,
            f"Figure 16, {variant}: time until all live nodes know the new leader",
            log_x=True,
        )
        if png is not None:
            print(f"wrote {png}")
    results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    name = "figure16" + ("" if args.variant is None else "_" + "_".join(variants))
    path = write_json(name + ("_quick" if args.quick else ""), results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

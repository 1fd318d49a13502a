"""How fast the simulator runs, in one process, and where the time goes.

    python benchmarks/sim_speed.py [--seeds 100] [--duration 60] [--profile]

Prints seeds per minute, events per second and simulated node-seconds per wall second
for one core, and writes them to ``benchmarks/results/sim_speed.json``. With
``--profile`` it also prints the functions that take the most time (cProfile), split into
the simulator's own code and the election core's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import time
from pathlib import Path

from almost_raft.sim import run_seed

RESULTS = Path(__file__).parent / "results" / "sim_speed.json"


def measure(seeds: int, duration: float) -> dict[str, float]:
    """Run ``seeds`` seeds back to back and return the rates."""
    events = 0
    node_seconds = 0.0
    started = time.perf_counter()
    for seed in range(seeds):
        result = run_seed(seed, duration=duration)
        events += result.events
        node_seconds += result.node_seconds
    wall = time.perf_counter() - started
    return {
        "seeds": seeds,
        "duration": duration,
        "wall_seconds": wall,
        "ms_per_seed": wall / seeds * 1000,
        "seeds_per_minute": seeds / wall * 60,
        "events_per_second": events / wall,
        "node_seconds_per_wall_second": node_seconds / wall,
        "events_per_seed": events / seeds,
    }


def profile(seeds: int, duration: float, top: int = 20) -> str:
    """The ``top`` functions by own time over ``seeds`` seeds, as cProfile prints them."""
    profiler = cProfile.Profile()
    profiler.enable()
    for seed in range(seeds):
        run_seed(seed, duration=duration)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile table")
    args = parser.parse_args()

    numbers = measure(args.seeds, args.duration)
    print(
        f"{numbers['seeds']} seeds of {numbers['duration']:g} simulated s on one core: "
        f"{numbers['ms_per_seed']:.1f} ms per seed, {numbers['seeds_per_minute']:,.0f} "
        f"seeds/min, {numbers['events_per_second']:,.0f} events/s, "
        f"{numbers['node_seconds_per_wall_second']:,.0f} simulated node-seconds/s"
    )
    per_two_cores = 10_000 / (2 * numbers["seeds_per_minute"])
    print(f"10,000 seeds on two such cores: about {per_two_cores:.1f} minutes")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {**numbers, "python": platform.python_version(), "machine": platform.machine()}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if args.profile:
        print(profile(min(args.seeds, 30), args.duration))


if __name__ == "__main__":
    main()

"""What every failover benchmark shares: statistics, the machine, JSON results, CDF plots.

Durations are kept in seconds while measuring and shown in milliseconds. Percentiles
interpolate linearly between the two nearest samples (numpy's default), so the p99 of 200
trials lies between the second and third largest.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Count, mean, median, p90, p99 and max of durations, in milliseconds."""
    ms = [value * 1000 for value in seconds]
    return {
        "n": len(ms),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
        "min_ms": min(ms) if ms else math.nan,
        "median_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def ideal_failover(
    followers: int,
    timeout_range: tuple[float, float],
    heartbeat: float,
    one_way: float,
    rounds: float,
    samples: int = 200_000,
    seed: int = 0,
) -> dict[str, float]:
    """The best case of a silent failure, as a distribution: median and mean, in ms.

    The leader dies at a uniformly random moment of its heartbeat interval, so the last
    heartbeat left ``U[0, heartbeat)`` before the crash and reached the followers
    ``one_way`` later; each follower then waits its own ``U[low, high)`` timeout and the
    earliest one campaigns. No vote splits, and the election costs ``rounds`` one-way
    message delays after that (a pre-vote and a vote round trip, then the first heartbeat:
    5 for "all nodes know the new leader", 4 for "the new leader knows").

    Args:
        followers: the live nodes that can time out.
        timeout_range: ``(low, high)`` seconds of the election timeout.
        heartbeat: seconds between heartbeats.
        one_way: seconds one message takes.
        rounds: how many one-way delays the election itself costs.
        samples: Monte Carlo samples of the crash phase and the timeouts.
        seed: seeds the sampling, so the numbers are reproducible.
    """
    rng = random.Random(seed)
    low, high = timeout_range
    draws = []
    for _ in range(samples):
        earliest = min(rng.uniform(low, high) for _ in range(followers))
        draws.append(one_way + earliest - rng.uniform(0, heartbeat) + rounds * one_way)
    return {
        "median_ms": percentile(draws, 50) * 1000,
        "mean_ms": sum(draws) / len(draws) * 1000,
        "p99_ms": percentile(draws, 99) * 1000,
    }


def machine() -> dict[str, Any]:
    """The machine the numbers were measured on: cores, CPU, Python, load, date."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(value, 2) for value in load],
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "library": _library(),
    }


def _library() -> str:
    """Where almost_raft was imported from (a checkout's src, or an installed copy)."""
    try:
        import almost_raft
    except ImportError:
        return "not importable"
    return str(Path(almost_raft.__file__).parent)


def write_json(name: str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``benchmarks/results/<name>.json`` and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def plot_cdfs(
    name: str,
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str = "milliseconds after the leader failed",
    log_x: bool = False,
) -> Path | None:
    """Plot one CDF line per series (durations in seconds) to ``results/<name>.png``.

    matplotlib is optional (``pip install 'almost-raft[plots]'``); without it this prints
    how to get it and returns ``None``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed, so no {name}.png; pip install 'almost-raft[plots]'")
        return None
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, values in series.items():
        ordered = sorted(value * 1000 for value in values)
        if not ordered:
            continue
        fractions = [(index + 1) / len(ordered) for index in range(len(ordered))]
        axes.step(ordered, fractions, where="post", label=label)
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("cumulative fraction of trials")
    axes.set_title(title)
    axes.set_ylim(0, 1.01)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats are shown with one decimal."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.1f}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)

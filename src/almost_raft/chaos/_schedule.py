"""The fault schedule of a chaos run: made from a seed before the run starts.

A schedule is a list of :class:`Fault`, each with a start, a duration and what it hits.
The same seed, node ids and duration always give the same schedule; what the cluster
does in between is real time and real processes, so a run is not replayed exactly, but
its faults are.

Kinds
-----
``drop``          a directed link loses a fraction of its messages (up to 50%).
``delay``         a directed link holds every message (up to 200 ms).
``cut_one_way``   a directed link carries nothing; the opposite direction still works.
``cut``           both directions between two nodes carry nothing.
``partition``     the nodes are split in two groups (one or two nodes against the rest).
``kill``          SIGKILL, and a restart with the same ports and state file afterwards.
``stop``          SIGSTOP, and SIGCONT afterwards: the process keeps its sockets, silent.

Rule 1 (a majority can come back). Fewer than half the processes are down (killed or
stopped) at once, two of five, so a majority can always elect once the links allow it.

Rule 2 (the leader is a target). Half the ``kill`` and ``stop`` faults name
:data:`LEADER`: the harness resolves it, when the fault starts, to the node that last
claimed leadership, if that node is up.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

__all__ = ["FAULT_KINDS", "LEADER", "Fault", "make_schedule"]

FAULT_KINDS = ("drop", "delay", "cut_one_way", "cut", "partition", "kill", "stop")
LEADER = "<leader>"
PROCESS_KINDS = frozenset({"kill", "stop"})


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One fault of the schedule.

    Attributes:
        at: seconds after the chaos starts.
        duration: seconds until it is healed (the node restarted or continued).
        kind: one of :data:`FAULT_KINDS`.
        nodes: what it hits. A link fault: ``(sender, receiver)``; ``cut``: the two
            nodes; ``partition``: the smaller group; ``kill``/``stop``: one node, or
            :data:`LEADER`.
        drop: for ``drop``, the probability of losing each message.
        delay: for ``delay``, seconds each message is held.
    """

    at: float
    duration: float
    kind: str
    nodes: tuple[str, ...]
    drop: float = 0.0
    delay: float = 0.0

    @property
    def ends(self) -> float:
        """Seconds after the chaos starts at which it is healed."""
        return self.at + self.duration

    def describe(self) -> str:
        """A short human line, e.g. ``"kill n3 for 1.20s"``."""
        directed = self.kind in ("drop", "delay", "cut_one_way")
        what = "->".join(self.nodes) if directed else " ".join(self.nodes)
        extra = ""
        if self.kind == "drop":
            extra = f" {self.drop:.0%}"
        elif self.kind == "delay":
            extra = f" {self.delay * 1000:.0f}ms"
        return f"{self.kind}{extra} {what} for {self.duration:.2f}s"


def make_schedule(
    seed: int,
    nodes: Sequence[str],
    duration: float,
    *,
    min_gap: float = 0.3,
    max_gap: float = 1.5,
) -> list[Fault]:
    """Draw the faults of a run of ``duration`` seconds from ``seed``.

    A fault starts every ``min_gap`` to ``max_gap`` seconds and lasts 0.3 to 4 s; faults
    overlap freely, but for Rule 1. Each kind is drawn with the same weight, and every
    fault is healed before ``duration`` ends.

    Raises:
        ValueError: fewer than three nodes, a duration below 2 s, or a gap range that
            is empty or not positive.
    """
    if len(nodes) < 3:
        raise ValueError(f"a chaos run needs at least three nodes, got {len(nodes)}")
    if duration < 2.0:
        raise ValueError(f"a chaos run needs at least 2 s, got {duration}")
    if not 0 < min_gap <= max_gap:
        raise ValueError(f"need 0 < min_gap <= max_gap, got {min_gap} and {max_gap}")
    rng = random.Random(seed)
    ids = sorted(nodes)
    max_down = (len(ids) - 1) // 2
    faults: list[Fault] = []
    now = rng.uniform(min_gap, max_gap)
    while now < duration - 1.0:
        length = min(rng.uniform(0.3, 4.0), duration - 0.5 - now)
        kind = rng.choice(FAULT_KINDS)
        if kind in PROCESS_KINDS:
            down = [f for f in faults if f.kind in PROCESS_KINDS and f.ends > now]
            if len(down) >= max_down:
                kind = "drop"
        faults.append(_fault(rng, kind, now, length, ids, faults))
        now += rng.uniform(min_gap, max_gap)
    return faults


def _fault(
    rng: random.Random,
    kind: str,
    at: float,
    length: float,
    ids: list[str],
    earlier: list[Fault],
) -> Fault:
    if kind in ("drop", "delay", "cut_one_way", "cut"):
        pair = tuple(rng.sample(ids, 2))
        if kind == "drop":
            return Fault(at, length, kind, pair, drop=rng.uniform(0.1, 0.5))
        if kind == "delay":
            return Fault(at, length, kind, pair, delay=rng.uniform(0.01, 0.2))
        return Fault(at, length, kind, pair)
    if kind == "partition":
        group = tuple(sorted(rng.sample(ids, rng.choice((1, 2)))))
        return Fault(at, length, kind, group)
    # A process fault: the leader, or a node no other process fault holds now.
    busy = {n for f in earlier if f.kind in PROCESS_KINDS and f.ends > at for n in f.nodes}
    free = [n for n in ids if n not in busy]
    target = LEADER if rng.random() < 0.5 else rng.choice(free)
    return Fault(at, min(length, 3.0), kind, (target,))

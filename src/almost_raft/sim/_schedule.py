"""What goes wrong, and when: the fault schedule of one simulated run.

The schedule decides; the simulation carries out. Every decision is drawn from the
``random.Random`` handed in, so a seed replays the same faults. Some faults aim at the
cluster's current state (crash the leader, crash a node that just voted), which is what
finds bugs that only show in the middle of an election; the simulation passes a
:class:`ClusterView` so those choices stay deterministic too.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

__all__ = ["MEMBERSHIP_PROFILE", "ClusterView", "Fault", "FaultProfile", "choose_fault"]

#: Every fault kind a profile can weigh.
FAULT_KINDS = (
    "crash",
    "crash_leader",
    "crash_voter",
    "crash_candidate",
    "isolate",
    "isolate_leader",
    "partition",
    "cut",
    "cut_one_way",
    "weather",
    "shutdown_leader",
    "false_evidence",
    "disconnect_leader",
    "step_down_leader",
    "add_member",
    "remove_member",
    "replace_member",
    "remove_leader",
    "promote_member",
    "remove_down_member",
)

_MEMBERSHIP_KINDS = frozenset(
    {
        "add_member",
        "remove_member",
        "replace_member",
        "remove_leader",
        "promote_member",
        "remove_down_member",
    }
)

_DEFAULT_WEIGHTS: Mapping[str, float] = {
    "crash": 2.0,
    "crash_leader": 2.0,
    "crash_voter": 1.0,
    "crash_candidate": 1.0,
    "isolate": 1.0,
    "isolate_leader": 1.0,
    "partition": 2.0,
    "cut": 1.0,
    "cut_one_way": 1.0,
    "weather": 2.0,
    "shutdown_leader": 1.0,
    "false_evidence": 1.0,
    "disconnect_leader": 1.0,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FaultProfile:
    """How hard a run is shaken before the final heal. Durations are in seconds.

    Attributes:
        mean_gap: the mean time between two faults (drawn exponentially).
        weights: how often each kind of fault is chosen, relative to the others. Kinds:
            ``crash`` (a random node), ``crash_leader``, ``crash_voter`` (the next node
            to grant a vote crashes right after sending it and restarts quickly, which
            catches a vote that was not durable), ``crash_candidate`` (the next node to
            raise its term for a campaign crashes just before its save of that term
            ends, after its vote requests left), ``isolate``, ``isolate_leader``,
            ``partition``
            (two random groups), ``cut`` (one link, both ways), ``cut_one_way``,
            ``weather`` (new drop, delay and duplicate rates), ``shutdown_leader`` (the
            leader hands over, then stops), ``false_evidence`` (every node is told the
            live leader's process is gone), ``disconnect_leader`` (every node's
            connection to the live leader ends, and it redials at once: no evidence)
            and ``step_down_leader`` (the leader hands over and runs on; weight 0
            unless given). Every crash also tells each node the crashed one can
            reach that its connection ended (one delay later) and then, if it can
            reach the crashed one too, that its redial was refused (a round trip
            later), as the TCP transport would.
            Membership changes, asked of the current leader (they weigh 0 unless given,
            and need spare nodes to add): ``add_member`` (a spare joins, as a voter or,
            one time in three, as a non-voter), ``remove_member`` (a follower),
            ``replace_member`` (a follower is removed, a spare added a moment later),
            ``remove_leader``, ``promote_member`` (a non-voter) and
            ``remove_down_member`` (a follower crashes and is removed while it is down;
            it comes back after the leader has stopped telling it, drawn from
            ``downtime`` plus twice ``election_timeout_max``, and must learn from a
            member that it was removed, and leave).
        downtime: how long a crashed node stays down.
        quick_restart: how long a ``crash_voter`` or ``crash_candidate`` victim stays
            down.
        cut_time: how long an isolation, partition or cut lasts.
        base_delay: the delay range of a healthy network, also used after the heal.
        max_drop_rate: the highest drop rate bad weather brings.
        max_delay: the highest one-way delay bad weather brings.
        max_duplicate_rate: the highest duplicate rate bad weather brings.
        save_time: how long a node's save of its term and vote takes. The node takes no
            input meanwhile, and a crash loses the save.

    Raises:
        ValueError: a weight names an unknown kind, or a value is out of range.
    """

    mean_gap: float = 1.0
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))
    downtime: tuple[float, float] = (0.05, 3.0)
    quick_restart: tuple[float, float] = (0.001, 0.05)
    cut_time: tuple[float, float] = (0.2, 5.0)
    base_delay: tuple[float, float] = (0.0002, 0.002)
    max_drop_rate: float = 0.3
    max_delay: float = 0.1
    max_duplicate_rate: float = 0.2
    save_time: tuple[float, float] = (0.0002, 0.004)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError("fault weights must not be negative")
        if self.mean_gap <= 0:
            raise ValueError(f"mean_gap must be greater than 0, got {self.mean_gap}")
        for name in ("downtime", "quick_restart", "cut_time", "base_delay", "save_time"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
        if not 0 <= self.max_drop_rate < 1 or not 0 <= self.max_duplicate_rate < 1:
            raise ValueError("max_drop_rate and max_duplicate_rate must be in [0, 1)")
        if self.max_delay < self.base_delay[1]:
            raise ValueError("max_delay must be at least the upper end of base_delay")


#: The default faults with membership changes mixed in, about as often as each of them,
#: and a fault every half second; run it with spare nodes (``run_seed(spares=2)``).
MEMBERSHIP_PROFILE = FaultProfile(
    mean_gap=0.5,
    weights={
        **_DEFAULT_WEIGHTS,
        "add_member": 3.0,
        "remove_member": 2.0,
        "replace_member": 2.0,
        "remove_leader": 1.0,
        "promote_member": 1.0,
        "remove_down_member": 1.0,
    },
)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One fault to carry out.

    ``kind`` is ``crash``, ``crash_next_voter``, ``crash_next_candidate``, ``shutdown``,
    ``false_evidence``, ``disconnect``, ``step_down``, ``isolate``, ``partition``,
    ``cut``, ``cut_one_way`` or ``weather``, or a membership change: ``member_add``,
    ``member_add_non_voter``, ``member_remove``, ``member_replace``, ``member_promote``
    or ``member_remove_down`` (the member crashes for ``lasts`` and more, and is removed
    meanwhile). ``nodes`` names the crashed, stopped or isolated node (or the leader
    wrongly reported gone, or whose connections end), a link's two ends (sender first for
    a one-way cut), or the member a change is about (for a replacement the one to remove,
    then the one to add); ``groups`` holds a partition's sides. The fault is undone after
    ``lasts`` seconds (a crashed node restarts; weather lasts until the next weather).
    """

    kind: str
    nodes: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    lasts: float = 0.0
    drop_rate: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    duplicate_rate: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterView:
    """What the schedule may know about the cluster when it picks a fault.

    Attributes:
        nodes: every node id, sorted.
        up: the ids of nodes that are running, sorted.
        leaders: the ids of running nodes that believe they lead, sorted.
        voters: the voters of the newest leader's configuration, sorted.
        non_voters: its non-voters, sorted.
        spares: nodes that are not members and not running, which may be added, sorted.
    """

    nodes: tuple[str, ...]
    up: tuple[str, ...]
    leaders: tuple[str, ...]
    voters: tuple[str, ...] = ()
    non_voters: tuple[str, ...] = ()
    spares: tuple[str, ...] = ()


def choose_fault(rng: random.Random, profile: FaultProfile, view: ClusterView) -> Fault | None:
    """Draw the next fault, or ``None`` when the drawn kind has no target right now."""
    kinds = [kind for kind in FAULT_KINDS if profile.weights.get(kind, 0.0) > 0]
    if not kinds:
        return None
    kind = rng.choices(kinds, [profile.weights[kind] for kind in kinds])[0]
    if kind == "weather":
        return weather(rng, profile)
    if kind == "shutdown_leader":
        # A clean shutdown: the leader hands over (TimeoutNow), then its process exits.
        victim = _pick(rng, view.leaders)
        if victim is None:
            return None
        return Fault("shutdown", (victim,), lasts=rng.uniform(*profile.downtime))
    if kind == "step_down_leader":
        # The leader hands over (TimeoutNow) and goes on running as a follower.
        victim = _pick(rng, view.leaders)
        return None if victim is None else Fault("step_down", (victim,))
    if kind == "false_evidence":
        # A transport wrongly reports a live leader's process as gone, to every node.
        victim = _pick(rng, view.leaders)
        return None if victim is None else Fault("false_evidence", (victim,))
    if kind == "disconnect_leader":
        # Every connection to a live leader breaks at once (a blip), as a crash begins.
        victim = _pick(rng, view.leaders)
        return None if victim is None else Fault("disconnect", (victim,))
    if kind in _MEMBERSHIP_KINDS:
        return _membership_change(rng, kind, view, profile.downtime)
    if kind == "crash_voter":
        # The victim is not known yet: it is whichever node grants a vote next.
        return Fault("crash_next_voter", lasts=rng.uniform(*profile.quick_restart))
    if kind == "crash_candidate":
        # Likewise: whichever node raises its term for a campaign next.
        return Fault("crash_next_candidate", lasts=rng.uniform(*profile.quick_restart))
    if kind.startswith("crash"):
        victim = _pick(rng, view.leaders if kind == "crash_leader" else view.up)
        if victim is None:
            return None
        return Fault("crash", (victim,), lasts=rng.uniform(*profile.downtime))
    lasts = rng.uniform(*profile.cut_time)
    if kind.startswith("isolate"):
        victim = _pick(rng, view.leaders if kind == "isolate_leader" else view.nodes)
        return None if victim is None else Fault("isolate", (victim,), lasts=lasts)
    if kind == "partition":
        shuffled = list(view.nodes)
        rng.shuffle(shuffled)
        split = rng.randint(1, len(shuffled) - 1) if len(shuffled) > 1 else 1
        groups = (tuple(sorted(shuffled[:split])), tuple(sorted(shuffled[split:])))
        return Fault("partition", groups=groups, lasts=lasts)
    if len(view.nodes) < 2:
        return None
    ends = tuple(rng.sample(view.nodes, 2))
    return Fault(kind, ends, lasts=lasts)


def _membership_change(
    rng: random.Random, kind: str, view: ClusterView, downtime: tuple[float, float]
) -> Fault | None:
    """A change for the newest leader to make, or ``None`` when it has no target."""
    followers = [voter for voter in view.voters if voter not in view.leaders]
    if kind == "remove_down_member":
        victim = _pick(rng, [voter for voter in followers if voter in view.up])
        if victim is None:
            return None
        return Fault("member_remove_down", (victim,), lasts=rng.uniform(*downtime))
    if kind == "add_member":
        spare = _pick(rng, view.spares)
        if spare is None:
            return None
        return Fault("member_add_non_voter" if rng.random() < 1 / 3 else "member_add", (spare,))
    if kind == "remove_member":
        victim = _pick(rng, followers + list(view.non_voters))
        return None if victim is None else Fault("member_remove", (victim,))
    if kind == "replace_member":
        victim = _pick(rng, followers)
        spare = _pick(rng, view.spares)
        if victim is None or spare is None:
            return None
        return Fault("member_replace", (victim, spare))
    if kind == "remove_leader":
        leader = _pick(rng, [leader for leader in view.leaders if leader in view.voters])
        return None if leader is None else Fault("member_remove", (leader,))
    victim = _pick(rng, view.non_voters)
    return None if victim is None else Fault("member_promote", (victim,))


def weather(rng: random.Random, profile: FaultProfile) -> Fault:
    """Draw new network weather: calm about half the time, otherwise lossy and slow."""
    low, high = profile.base_delay
    if rng.random() < 0.4:
        return Fault("weather", delay=(low, high))
    drop_rate = 0.0 if rng.random() < 0.3 else rng.uniform(0.0, profile.max_drop_rate)
    duplicate_rate = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, profile.max_duplicate_rate)
    slow = rng.uniform(high, profile.max_delay)
    return Fault(
        "weather",
        drop_rate=drop_rate,
        delay=(low, slow),
        duplicate_rate=duplicate_rate,
    )


def _pick(rng: random.Random, candidates: Sequence[str]) -> str | None:
    return rng.choice(candidates) if candidates else None

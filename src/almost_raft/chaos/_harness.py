"""Runs a chaos schedule against real ``almost-raft run`` processes and checks the result.

The run: start the proxies and the cluster (every node sends to each peer through the
proxy of that directed link), wait for a first leader, then carry out the schedule,
each fault at its time, each heal at its end. A killed node's state file is sampled
right after the kill and right after its restart. At the end everything is healed, the
cluster must agree on a leader again, every state file is sampled once more, and the
checker reads every node's log.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..core._errors import StateFileError
from ..node._process_cluster import ClusterTimings, ProcessCluster
from ..store._store import decode_state
from ._checker import CheckResult, Outage, StateSample, check, read_events
from ._proxy import LinkState, LinkStats, ProxyNetwork
from ._schedule import LEADER, PROCESS_KINDS, Fault, make_schedule
from ._stamps import STAMPING_COMMAND, gaps, overlaps, read_stamps

__all__ = ["ChaosOptions", "ChaosReport", "print_report", "run_chaos"]

#: Timings that leave room for a loaded machine: faults, not CPU starvation, should
#: cause the elections.
DEFAULT_TIMINGS = ClusterTimings(
    election_timeout_ms=300,
    election_timeout_max_ms=600,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosOptions:
    """What to run.

    Attributes:
        seed: draws the schedule and the dropped frames.
        duration: seconds of chaos (faults start and heal within it).
        size: how many nodes.
        timings: the cluster's election timings.
        recovery_deadline: seconds the healed cluster has to agree on a leader.
        keep_logs: a directory to copy the nodes' logs into, or ``None``.
        commands: every node runs an exclusive leader command that stamps its life
            (see :mod:`._stamps`), and the report says whether two ever ran at once;
            ``"ignore-sigterm"`` makes the commands ignore SIGTERM, so only the
            watchdog's SIGKILL at the lease's end stops a command its node cannot.
    """

    seed: int = 1
    duration: float = 60.0
    size: int = 5
    timings: ClusterTimings = DEFAULT_TIMINGS
    recovery_deadline: float = 30.0
    keep_logs: Path | None = None
    commands: bool | str = False


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosReport:
    """What happened in a run.

    Attributes:
        options: what was run.
        faults: how many faults of each kind were injected (a process fault finds no
            target only if every process that is not held by another fault has exited).
        restarts: node restarts after SIGKILL.
        check: what the checker found.
        recovered_after: seconds from the final heal until all nodes agreed on a leader,
            or ``None`` if they did not within the deadline.
        final_leader: ``(leader, term)`` after the heal, or ``None``.
        links: each directed link's proxy counters.
        samples: state-file samples taken.
        command_overlaps: with ``commands``, every pair of leader commands that ran at
            once (none, if exclusive leadership holds).
        command_gaps: with ``commands``, seconds from each command's last stamp to the
            next one's start: the price of the guarantee.
    """

    options: ChaosOptions
    faults: dict[str, int]
    restarts: int
    check: CheckResult
    recovered_after: float | None
    final_leader: tuple[str, int] | None
    links: dict[tuple[str, str], LinkStats]
    samples: int
    command_overlaps: tuple[str, ...] = ()
    command_gaps: tuple[float, ...] = ()

    @property
    def frames_dropped(self) -> int:
        """Message frames the proxies threw away."""
        return sum(s.dropped for s in self.links.values())

    @property
    def connections_cut(self) -> int:
        """Established connections the proxies aborted when their link was cut."""
        return sum(s.connections_cut for s in self.links.values())

    @property
    def ok(self) -> bool:
        """No violation, no two commands at once, and the healed cluster elected a leader."""
        return (
            not self.check.violations
            and not self.command_overlaps
            and self.recovered_after is not None
        )


class _Run:
    """The state of one run while it executes: who is down, which faults hold which link."""

    def __init__(self, cluster: ProcessCluster, network: ProxyNetwork, seed: int) -> None:
        self.cluster = cluster
        self.network = network
        self.rng = random.Random(seed ^ 0x5EED)
        self.link_faults: dict[tuple[str, str], list[Fault]] = collections.defaultdict(list)
        self.down: dict[str, tuple[str, float]] = {}  # node -> (kind, since)
        self.outages: list[Outage] = []
        self.samples: list[StateSample] = []
        self.injected: collections.Counter[str] = collections.Counter()
        self.restarts = 0
        self.leader: str | None = None
        self.resolved: dict[int, str] = {}

    def follow_leader(self) -> None:
        for event in self.cluster.leader_events():
            if event.is_self:
                self.leader = event.node

    def sample(self, node: str) -> None:
        path = self.cluster.state_path(node)
        at = time.monotonic()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        try:
            term = decode_state(raw, str(path)).term
        except StateFileError:
            # A damaged file stops the node from starting: a term of -1 is below any
            # term it held, so the checker reports it.
            term = -1
        self.samples.append(StateSample(node, term, at))

    # ------------------------------------------------------------------ faults

    def begin(self, index: int, fault: Fault) -> None:
        if fault.kind in PROCESS_KINDS:
            node = self._process_target(fault)
            if node is None:
                return
            self.injected[fault.kind] += 1
            self.resolved[index] = node
            if fault.kind == "kill":
                self.cluster.kill(node)
                self.sample(node)
            else:
                self.cluster.stop(node)
            self.down[node] = (fault.kind, time.monotonic())
            return
        self.injected[fault.kind] += 1
        for link in _links(fault, self.network.nodes):
            self.link_faults[link].append(fault)
            self._apply(link)

    def end(self, index: int, fault: Fault) -> None:
        if fault.kind in PROCESS_KINDS:
            node = self.resolved.pop(index, None)
            if node is not None:
                self._bring_back(node)
            return
        for link in _links(fault, self.network.nodes):
            self.link_faults[link].remove(fault)
            self._apply(link)

    def heal_everything(self) -> None:
        for node in list(self.down):
            self._bring_back(node)
        self.link_faults.clear()
        self.network.heal_all()

    def _bring_back(self, node: str) -> None:
        kind, since = self.down.pop(node)
        if kind == "kill":
            self.cluster.restart(node)
            self.restarts += 1
            self.sample(node)
        else:
            self.cluster.cont(node)
        self.outages.append(Outage(node, since, time.monotonic()))

    def _process_target(self, fault: Fault) -> str | None:
        """The node a process fault hits: the one it names if that one is up, else
        another that is; ``None`` if none is (a node that exited by itself is not up)."""
        (wanted,) = fault.nodes
        if wanted == LEADER:
            self.follow_leader()
            wanted = self.leader or ""
        candidates = [n for n in self.cluster.live() if n not in self.down]
        if wanted in candidates:
            return wanted
        return self.rng.choice(candidates) if candidates else None

    def _apply(self, link: tuple[str, str]) -> None:
        faults = self.link_faults[link]
        state = LinkState(
            cut=any(f.kind in ("cut", "cut_one_way", "partition") for f in faults),
            drop=max((f.drop for f in faults if f.kind == "drop"), default=0.0),
            delay=max((f.delay for f in faults if f.kind == "delay"), default=0.0),
        )
        self.network.set_state(*link, state)


def _links(fault: Fault, nodes: list[str]) -> list[tuple[str, str]]:
    """The directed links a link fault holds."""
    if fault.kind in ("drop", "delay", "cut_one_way"):
        src, dst = fault.nodes
        return [(src, dst)]
    if fault.kind == "cut":
        a, b = fault.nodes
        return [(a, b), (b, a)]
    if fault.kind == "partition":
        group = set(fault.nodes)
        rest = [n for n in nodes if n not in group]
        return [(a, b) for a in group for b in rest] + [(b, a) for a in group for b in rest]
    raise ValueError(f"{fault.kind} is not a link fault")


def run_chaos(options: ChaosOptions, out: TextIO | None = None) -> ChaosReport:
    """Run one chaos run and check it.

    Args:
        options: what to run.
        out: where to print the timeline of faults as they happen, or ``None``.

    Returns:
        The report; see :attr:`ChaosReport.ok`.

    Raises:
        TimeoutError: the cluster elected no first leader before the chaos.
        OSError: a process or a proxy could not be started.
    """
    say: Callable[[str], None] = (lambda _: None) if out is None else (lambda s: print(s, file=out))
    ids = [f"n{i}" for i in range(1, options.size + 1)]
    schedule = make_schedule(options.seed, ids, options.duration)
    real: dict[str, tuple[str, int]] = {}
    with (
        ProxyNetwork(ids, real.__getitem__, options.seed) as network,
        contextlib.ExitStack() as stack,
    ):
        command: list[str] = []
        if options.commands:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            command = [sys.executable, "-c", STAMPING_COMMAND, str(scratch / "stamps.txt")]
            if options.commands == "ignore-sigterm":
                command.append("ignore-sigterm")
        cluster = ProcessCluster(
            options.size,
            timings=options.timings,
            peer_address=network.address,
            command=command,
        )
        with cluster:
            real.update(cluster.addresses)
            cluster.wait_for_agreed_leader(options.recovery_deadline)
            run = _Run(cluster, network, options.seed)
            report = _execute(run, schedule, options, say)
    return report


def _execute(
    run: _Run, schedule: list[Fault], options: ChaosOptions, say: Callable[[str], None]
) -> ChaosReport:
    cluster = run.cluster
    steps: list[tuple[float, int, int, Fault]] = []  # (when, heal before start, index, fault)
    for index, fault in enumerate(schedule):
        steps.append((fault.at, 1, index, fault))
        steps.append((fault.ends, 0, index, fault))
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    began = time.monotonic()
    say(f"chaos: seed {options.seed}, {len(schedule)} faults over {options.duration:.0f}s")
    for when, starts, index, fault in steps:
        while (wait := began + when - time.monotonic()) > 0:
            run.follow_leader()
            time.sleep(min(wait, 0.05))
        if starts:
            run.begin(index, fault)
            target = run.resolved.get(index)
            say(f"{when:7.2f}s  {fault.describe()}" + (f" -> {target}" if target else ""))
        else:
            run.end(index, fault)
    while (wait := began + options.duration - time.monotonic()) > 0:
        time.sleep(min(wait, 0.05))
    run.heal_everything()
    healed = time.monotonic()
    say(f"{healed - began:7.2f}s  healed everything")
    recovered_after: float | None = None
    final: tuple[str, int] | None = None
    try:
        final = cluster.wait_for_agreed_leader(options.recovery_deadline)
        recovered_after = time.monotonic() - healed
    except TimeoutError as exc:
        say(f"no leader after the heal: {exc}")
    for node in cluster.ids:
        run.sample(node)
    events = [e for node in cluster.ids for e in read_events(cluster.log_path(node), node)]
    if options.keep_logs is not None:
        options.keep_logs.mkdir(parents=True, exist_ok=True)
        for node in cluster.ids:
            (options.keep_logs / f"{node}.log").write_bytes(cluster.log_path(node).read_bytes())
    result = check(events, run.samples, run.outages, span=(began, time.monotonic()))
    stamps = []
    if cluster.command:
        # The last stamp file argument is the shared file (see run_chaos).
        path = next(Path(arg) for arg in cluster.command if arg.endswith("stamps.txt"))
        stamps = read_stamps(path)
    return ChaosReport(
        options=options,
        faults=dict(run.injected),
        restarts=run.restarts,
        check=result,
        recovered_after=recovered_after,
        final_leader=final,
        links=run.network.stats(),
        samples=len(run.samples),
        command_overlaps=tuple(overlaps(stamps)),
        command_gaps=tuple(gaps(stamps)),
    )


def print_report(report: ChaosReport, out: TextIO) -> None:
    """The summary: faults by kind, elections, leaders, leaderless windows, violations."""
    result = report.check
    print("summary", file=out)
    faults = ", ".join(f"{kind} {count}" for kind, count in sorted(report.faults.items()))
    print(f"  faults injected:      {sum(report.faults.values())} ({faults})", file=out)
    print(f"  restarts after kill:  {report.restarts}", file=out)
    print(f"  frames dropped:       {report.frames_dropped}", file=out)
    print(f"  connections cut:      {report.connections_cut}", file=out)
    print(f"  elections:            {result.elections}", file=out)
    print(f"  leaders:              {', '.join(result.leaders) or '-'}", file=out)
    print(
        f"  leaderless windows:   {len(result.leaderless)}, "
        f"longest {result.longest_leaderless:.3f}s",
        file=out,
    )
    print(f"  state-file samples:   {report.samples}", file=out)
    if report.recovered_after is None:
        print("  after the heal:       NO LEADER", file=out)
    else:
        assert report.final_leader is not None
        leader, term = report.final_leader
        print(
            f"  after the heal:       {leader} leads term {term} "
            f"(agreed after {report.recovered_after:.3f}s)",
            file=out,
        )
    if report.options.commands:
        ordered = sorted(report.command_gaps) or [0.0]
        print(
            f"  leader commands:      {len(report.command_gaps) + 1} runs, "
            f"{len(report.command_overlaps)} overlaps, gaps median "
            f"{ordered[len(ordered) // 2]:.3f}s, longest {ordered[-1]:.3f}s",
            file=out,
        )
        for overlap in report.command_overlaps:
            print(f"    overlap: {overlap}", file=out)
    print(f"  violations:           {len(result.violations)}", file=out)
    for violation in result.violations:
        print(f"    {violation.kind}: {violation.message}", file=out)

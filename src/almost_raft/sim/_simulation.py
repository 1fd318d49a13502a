"""One simulated run: N election cores, a simulated clock and a faulty network.

Nothing here reads a clock, sleeps or uses asyncio. Time is the time of the event being
handled; events wait in one heap ordered by time, then by a sequence number, so two
events at the same instant always run in the same order and a seed replays exactly.

Each core's :class:`~almost_raft.Output` is carried out as the runtime does it: a
candidate's vote requests leave at once; a new hard state takes a save time drawn from
``FaultProfile.save_time``, during which the node takes no input (what arrives waits) and a
crash loses the save; then the other messages go to the network, the leadership news is
recorded, and a tick is scheduled for ``next_deadline``.

A run has two phases. Until ``heal_at`` the fault schedule crashes and restarts nodes,
cuts links and changes the network's weather. At ``heal_at`` every node is restarted,
every link mended and the weather calmed; from then on a leader known to every node must
appear within :func:`liveness_bound`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import heapq
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ..core._config import ElectionConfig
from ..core._messages import RequestVote, RequestVoteResponse
from ..core._outputs import Outbound, Output
from ..core._state import HardState, NodeState
from ..core._state_machine import ElectionCore
from ..store._store import MemoryStore, Store
from ..transport._faults import NetworkFaults
from ._checker import CORE_ERROR, NO_LEADER_AFTER_HEAL, Checker, Violation, liveness_bound
from ._clock import NodeClock
from ._exclusive import ExclusiveChecker
from ._schedule import ClusterView, Fault, FaultProfile, choose_fault, weather

__all__ = ["DEFAULT_CONFIG", "CoreFactory", "SeedResult", "quiet_logs", "run_seed"]

#: Realistic LAN timings: election timeouts drawn from [150 ms, 300 ms), heartbeats
#: every 50 ms.
DEFAULT_CONFIG = ElectionConfig(
    election_timeout=0.15, election_timeout_max=0.3, heartbeat_interval=0.05
)

_INF = math.inf
_LEADER = NodeState.LEADER
_DELIVER = 0
_TICK = 1
_CALL = 2
_EVIDENCE = 3  # the transport's report that a peer's process is gone
_HAND_OVER = 4  # a leader hands over, then stops (or, with no downtime, runs on)
_SAVED = 5  # a node's save of its term and vote has reached the disk


class CoreFactory(Protocol):
    """Builds a node's core; :class:`~almost_raft.ElectionCore` itself is one."""

    def __call__(
        self,
        node_id: str,
        peers: Iterable[str],
        config: ElectionConfig,
        rng: random.Random,
        now: float,
        hard_state: HardState | None = None,
    ) -> ElectionCore: ...


@dataclasses.dataclass(frozen=True, slots=True)
class SeedResult:
    """What one simulated run did, and every invariant it broke.

    Attributes:
        seed: the seed that replays this run.
        nodes: the cluster size.
        simulated_seconds: how long the run lasted in simulated time.
        heal_at: when the faults stopped and every node was brought back.
        elections_started: real elections (term raised), summed over every node.
        elections_won: elections that made a leader.
        pre_votes_started: pre-vote rounds started.
        leader_changes: how often the latest leader was a different node than the one
            before (the first leader counts).
        crashes: node crashes.
        handovers: elections a leader handed over (TimeoutNow) that the receiver started.
        leader_down_reports: times a follower acted on evidence that its leader was gone.
        messages_sent: messages handed to the network (before loss and duplication).
        events: events handled (deliveries, ticks and faults).
        highest_term: the highest term any node reached.
        leader_after_heal: seconds from the heal until one leader was known to every
            node, or ``None`` if that never happened.
        liveness_bound: the bound ``leader_after_heal`` was checked against.
        violations: every broken invariant, in the order seen.
        trace_digest: a SHA-256 of every event handled, if the run was traced.
    """

    seed: int
    nodes: int
    simulated_seconds: float
    heal_at: float
    elections_started: int
    elections_won: int
    pre_votes_started: int
    leader_changes: int
    crashes: int
    messages_sent: int
    handovers: int
    leader_down_reports: int
    events: int
    highest_term: int
    leader_after_heal: float | None
    liveness_bound: float
    violations: tuple[Violation, ...]
    trace_digest: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run broke no invariant."""
        return not self.violations

    @property
    def node_seconds(self) -> float:
        """Simulated seconds times the number of nodes."""
        return self.simulated_seconds * self.nodes


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Raise the ``almost_raft`` logger to ERROR while the block runs.

    Thousands of seeds log every election at INFO and every CheckQuorum step-down at
    WARNING, on purpose; only errors are worth showing in a bulk run.
    """
    logger = logging.getLogger("almost_raft")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_seed(
    seed: int,
    *,
    nodes: int = 5,
    duration: float = 60.0,
    config: ElectionConfig = DEFAULT_CONFIG,
    core_factory: CoreFactory = ElectionCore,
    store_factory: Callable[[], Store] = MemoryStore,
    persist: bool = True,
    hold_inputs_while_saving: bool = True,
    faults: bool | FaultProfile = True,
    trace: bool = False,
    quiet: bool = True,
    clock_drift: float | None = None,
) -> SeedResult:
    """Simulate one cluster for ``duration`` seconds and check it all along.

    Args:
        seed: replays the run: the same seed and options give the same run.
        nodes: the cluster size (nodes are named ``n1`` … ``nN``).
        duration: simulated seconds. The last quarter, and at least twice the liveness
            bound, is the heal phase.
        config: every node's election config.
        core_factory: builds each core, at start and at every restart.
        store_factory: builds each node's store once; it outlives the node's crashes.
        persist: save each batch's hard state before its messages leave. ``False``
            models a node that sends its vote without making it durable.
        hold_inputs_while_saving: feed a node nothing while its save runs, as the
            runtime does. ``False`` models a runtime that goes on feeding the core (and
            publishing its news) during a save, so a candidate can count its own vote,
            and lead, before that vote is durable.
        faults: ``True`` for the default :class:`FaultProfile`, ``False`` for a healthy
            cluster from the start (the whole run is then the heal phase), or a profile.
        trace: hash every event into :attr:`SeedResult.trace_digest`.
        quiet: silence the core's logging below ERROR during the run.
        clock_drift: how far the nodes' clocks drift apart (see :class:`NodeClock`);
            ``None`` means the config's ``max_clock_drift``, the most it promises to
            survive. A larger value models clocks that break the promise.

    Returns:
        The run's counters and violations. A core that raises ends the run early with a
        ``core_error`` violation instead of raising.

    Raises:
        ValueError: ``nodes`` is below 1 or ``duration`` is not positive.
    """
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    if not duration > 0:
        raise ValueError(f"duration must be greater than 0, got {duration}")
    if faults is True:
        profile: FaultProfile | None = FaultProfile()
    elif faults is False:
        profile = None
    else:
        profile = faults
    simulation = _Simulation(
        seed,
        nodes,
        duration,
        config,
        core_factory,
        store_factory,
        persist,
        hold_inputs_while_saving,
        profile,
        trace,
        config.max_clock_drift if clock_drift is None else clock_drift,
    )
    with quiet_logs() if quiet else contextlib.nullcontext():
        return simulation.run()


class _Node:
    __slots__ = (
        "clock",
        "core",
        "generation",
        "id",
        "incarnation",
        "index",
        "news",
        "pending",
        "saves",
        "store",
        "timer_at",
    )

    def __init__(self, node_id: str, index: int, store: Store, clock: NodeClock) -> None:
        self.id = node_id
        self.index = index
        self.store = store
        # The node's own clock, which its core reads; it outlives crashes like the host.
        self.clock = clock
        self.core: ElectionCore | None = None
        # Ticks are scheduled lazily: a tick event is pushed only when the deadline moves
        # earlier than the one already waiting; a tick that fires early re-arms itself.
        # ``generation`` makes events from before a crash or an earlier arming stale.
        self.timer_at = _INF
        self.generation = 0
        self.news: tuple[str | None, int] = (None, 0)
        # Saves under way, and the inputs that wait for them, as (kind, argument).
        self.saves = 0
        self.pending: list[tuple[int, Any]] = []
        # Counts crashes, so a save that finishes after one is known to be lost.
        self.incarnation = 0

    def __repr__(self) -> str:
        return self.id


class _Simulation:
    def __init__(
        self,
        seed: int,
        size: int,
        duration: float,
        config: ElectionConfig,
        core_factory: CoreFactory,
        store_factory: Callable[[], Store],
        persist: bool,
        hold_inputs: bool,
        profile: FaultProfile | None,
        trace: bool,
        clock_drift: float,
    ) -> None:
        self.seed = seed
        self.duration = duration
        self.config = config
        self.core_factory = core_factory
        self.persist = persist
        self.hold_inputs = hold_inputs
        self.profile = profile
        master = random.Random(seed)
        # Separate streams, so the cores' timeouts do not shift when the fault schedule
        # draws one more number, and the other way round.
        self.schedule_rng = random.Random(master.getrandbits(64))
        self.core_seeds = random.Random(master.getrandbits(64))
        calm = profile.base_delay if profile is not None else FaultProfile().base_delay
        self.calm_delay = calm
        self.network = NetworkFaults(random.Random(master.getrandbits(64)), delay=calm)
        # Drawn after the others, so adding it left their streams as they were.
        self.evidence_rng = random.Random(master.getrandbits(64))
        self.save_rng = random.Random(master.getrandbits(64))
        self.save_time = profile.save_time if profile is not None else FaultProfile().save_time
        clock_rng = random.Random(master.getrandbits(64))
        self.nodes = [
            _Node(f"n{i + 1}", i, store_factory(), NodeClock.drawn(clock_rng, clock_drift))
            for i in range(size)
        ]
        self.index = {node.id: node.index for node in self.nodes}
        self.checker = Checker()
        self.exclusive = ExclusiveChecker(self.checker)
        self.heap: list[tuple[Any, ...]] = []
        self.sequence = itertools.count()
        self.bound = liveness_bound(config, calm[1])
        heal_window = min(duration, max(duration / 4, 2 * self.bound))
        self.heal_at = duration - heal_window if profile is not None else 0.0
        self.healed = False
        self.converged_at: float | None = None
        self.cuts: list[Fault] = []
        self.voter_trap: Fault | None = None
        self.candidate_trap: Fault | None = None
        self.trace: Any = hashlib.sha256() if trace else None
        self.counters = {"started": 0, "won": 0, "pre_votes": 0, "handovers": 0, "leader_down": 0}
        self.crashes = 0
        self.messages_sent = 0
        self.events = 0
        self.leader_changes = 0
        self.last_leader: str | None = None
        self.highest_term = 0

    # ------------------------------------------------------------------ the event loop

    def run(self) -> SeedResult:
        for node in self.nodes:
            self._start(node, 0.0)
        if self.profile is not None:
            self._apply_weather(weather(self.schedule_rng, self.profile))
            self._push(self.schedule_rng.expovariate(1 / self.profile.mean_gap), self._fault)
        self._push(self.heal_at, self._heal)
        return self._result(self._loop())

    def _loop(self) -> float:
        """Handle events in time order until ``duration``; return the time reached.

        This is the hot path, so the batch handling lives in a closure over locals rather
        than in a method reading attributes.
        """
        heap = self.heap
        nodes = self.nodes
        end = self.duration
        pop = heapq.heappop
        push = heapq.heappush
        sequence = self.sequence
        index = self.index
        deliveries = self.network.deliveries
        checker = self.checker
        persist = self.persist
        hold = self.hold_inputs
        trace = self.trace
        save_time = self.save_rng.uniform
        save_low, save_high = self.save_time
        sent = 0

        def send(node: _Node, messages: tuple[Outbound, ...], now: float) -> None:
            nonlocal sent
            sender = node.id
            sent += len(messages)
            for outbound in messages:
                to = outbound.to
                message = outbound.message
                if (
                    message.__class__ is RequestVoteResponse
                    and message.granted
                    and not message.pre_vote
                ):
                    self._vote_sent(node, to, message.term, now)
                for delay in deliveries(sender, to):
                    push(heap, (now + delay, next(sequence), _DELIVER, index[to], message))

        def publish(node: _Node, output: Output, now: float) -> None:
            if output.leader_change is not None or output.role is not None:
                self._news(node, output, now)
            if output.lease is not None:
                self.exclusive.lease(node.id, output.lease, node.clock, now)
            deadline = node.clock.real(output.next_deadline)
            if deadline < node.timer_at:
                node.generation += 1
                node.timer_at = deadline
                push(heap, (deadline, next(sequence), _TICK, node.index, node.generation))

        def carry_out(node: _Node, output: Output, now: float) -> None:
            # The runtime's order: vote requests, durable state, other messages, news, timer.
            hard_state = output.hard_state
            messages = output.messages
            if hard_state is None:
                if messages:
                    send(node, messages, now)
                publish(node, output, now)
                return
            if not persist:
                checker.term_seen(node.id, hard_state.term, now)
                if messages:
                    send(node, messages, now)
                publish(node, output, now)
                return
            requests = tuple(o for o in messages if o.message.__class__ is RequestVote)
            if requests:
                send(node, requests, now)
                messages = tuple(o for o in messages if o.message.__class__ is not RequestVote)
            done_at = now + save_time(save_low, save_high)
            node.saves += 1
            rest = Output(
                messages,
                hard_state,
                output.leader_change,
                output.role,
                output.next_deadline,
                output.lease,
            )
            if not hold:
                publish(node, output, now)
            push(heap, (done_at, next(sequence), _SAVED, node.index, (node.incarnation, rest)))
            if requests and self.candidate_trap is not None:
                # Crash a moment before the save ends, when the most has happened that a
                # lost save could contradict.
                self._push(max(now, done_at - 1e-6), self._spring_candidate_trap, node)

        def saved(node: _Node, rest: Output, now: float) -> None:
            hard_state = rest.hard_state
            assert hard_state is not None, "only a batch with a hard state waits for a save"
            checker.term_seen(node.id, hard_state.term, now)
            node.store.save(hard_state)
            node.saves -= 1
            if rest.messages:
                send(node, rest.messages, now)
            if hold:
                publish(node, rest, now)
                pending = node.pending
                while pending and not node.saves and node.core is not None:
                    kind, arg = pending.pop(0)
                    handle(node, kind, arg, now)

        def handle(node: _Node, kind: int, arg: Any, now: float) -> None:
            core = node.core
            assert core is not None, "inputs reach running nodes only"
            # The core reads its own clock; the events run on real time.
            local = node.clock.local(now)
            if kind == _DELIVER:
                carry_out(node, core.receive(arg, local), now)
            elif kind == _TICK:
                deadline = core.next_deadline
                if local < deadline:
                    self._arm(node, deadline)
                else:
                    carry_out(node, core.tick(local), now)
            elif kind == _EVIDENCE:
                carry_out(node, core.peer_unreachable(arg, local), now)
            else:
                carry_out(node, core.transfer_leadership(local), now)
                if arg is not None:
                    self._crash_for(node, arg, now)

        events = 0
        now = 0.0
        try:
            while heap:
                event = pop(heap)
                now = event[0]
                if now > end:
                    return end
                events += 1
                kind = event[2]
                if trace is not None:
                    what = event[3].__name__ if kind == _CALL else event[3]
                    trace.update(repr((now, kind, what, event[4])).encode())
                if kind == _CALL:
                    event[3](now, event[4])
                    continue
                node = nodes[event[3]]
                if node.core is None:
                    continue
                if kind == _SAVED:
                    incarnation, rest = event[4]
                    if incarnation == node.incarnation:
                        saved(node, rest, now)
                    continue
                if kind == _TICK:
                    if event[4] != node.generation:
                        continue
                    node.timer_at = _INF
                if node.saves and hold:
                    node.pending.append((kind, event[4]))
                    continue
                handle(node, kind, event[4], now)
        except Exception as exc:  # a core raised: a finding to report with its seed
            checker.report(CORE_ERROR, f"{type(exc).__name__}: {exc}", now)
            return now
        finally:
            self.events = events
            self.messages_sent = sent
        return end

    def _push(self, when: float, action: Callable[[float, Any], None], arg: Any = None) -> None:
        heapq.heappush(self.heap, (when, next(self.sequence), _CALL, action, arg))

    def _arm(self, node: _Node, local_deadline: float) -> None:
        deadline = node.clock.real(local_deadline)
        if deadline < node.timer_at:
            node.generation += 1
            node.timer_at = deadline
            heapq.heappush(
                self.heap, (deadline, next(self.sequence), _TICK, node.index, node.generation)
            )

    def _vote_sent(self, node: _Node, candidate: str, term: int, now: float) -> None:
        self.checker.vote_sent(node.id, candidate, term, now)
        if self.voter_trap is not None:
            # Crash once the whole batch is out, as a process dies after its send returns.
            self._push(now, self._spring_voter_trap, node)

    def _news(self, node: _Node, output: Output, now: float) -> None:
        news = output.leader_change
        if news is not None:
            node.news = (news.leader_id, news.term)
            if self.healed and self.converged_at is None:
                self._check_converged(now)
        if output.role is _LEADER:
            assert node.core is not None
            self._became_leader(node, node.core.term, now)

    def _became_leader(self, node: _Node, term: int, now: float) -> None:
        self.checker.became_leader(node.id, term, now)
        if node.id != self.last_leader:
            self.leader_changes += 1
            self.last_leader = node.id

    def _check_converged(self, now: float) -> None:
        """Whether every node is up and names the same leader, which leads that term."""
        first = self.nodes[0].news
        leader_id, term = first
        if leader_id is None:
            return
        for node in self.nodes:
            if node.core is None or node.news != first:
                return
        leader = self.nodes[self.index[leader_id]].core
        if leader is not None and leader.role is _LEADER and leader.term == term:
            self.converged_at = now

    # ------------------------------------------------------------------ crashes

    def _start(self, node: _Node, now: float) -> None:
        rng = random.Random(self.core_seeds.getrandbits(64))
        peers = [other.id for other in self.nodes if other is not node]
        core = self.core_factory(
            node.id, peers, self.config, rng, node.clock.local(now), node.store.load()
        )
        node.core = core
        node.news = (None, 0)
        self.checker.term_seen(node.id, core.term, now)
        self._arm(node, core.next_deadline)

    def _crash(self, node: _Node, now: float) -> None:
        core = node.core
        if core is None:
            return
        self._collect(core)
        self.exclusive.stopped(node.id, now)
        self.crashes += 1
        # Everything but the store is lost: the core, its timers, and (by delivery-time
        # checks) every message that reaches the node while it is down.
        node.core = None
        node.generation += 1
        node.timer_at = _INF
        node.news = (None, 0)
        # A save under way is lost, and so is the input that waited for it.
        node.incarnation += 1
        node.saves = 0
        node.pending.clear()
        # Its host refuses connections now: each node that can reach it notices when its
        # connection breaks, a moment later.
        for other in self.nodes:
            if other.core is not None and self.network.can_reach(other.id, node.id):
                self._evidence(other, node.id, now + self.evidence_rng.uniform(0.0005, 0.005))

    def _evidence(self, node: _Node, about: str, when: float) -> None:
        heapq.heappush(self.heap, (when, next(self.sequence), _EVIDENCE, node.index, about))

    def _crash_for(self, node: _Node, downtime: float, now: float) -> None:
        self._crash(node, now)
        self._push(now + downtime, self._restart, node)

    def _spring_voter_trap(self, now: float, node: _Node) -> None:
        trap = self.voter_trap
        self.voter_trap = None
        if trap is not None and now < self.heal_at:
            self._crash_for(node, trap.lasts, now)

    def _spring_candidate_trap(self, now: float, node: _Node) -> None:
        trap = self.candidate_trap
        if trap is not None and now < self.heal_at and node.saves and node.core is not None:
            self.candidate_trap = None
            self._crash_for(node, trap.lasts, now)

    def _restart(self, now: float, node: _Node) -> None:
        if node.core is None:
            self._start(node, now)

    def _collect(self, core: ElectionCore) -> None:
        metrics = core.metrics
        self.counters["started"] += metrics.elections_started
        self.counters["won"] += metrics.elections_won
        self.counters["pre_votes"] += metrics.pre_votes_started
        self.counters["handovers"] += metrics.handovers_received
        self.counters["leader_down"] += metrics.leader_down_reports
        self.highest_term = max(self.highest_term, core.term)

    # ------------------------------------------------------------------ faults

    def _fault(self, now: float, _: object) -> None:
        profile = self.profile
        if profile is None or now >= self.heal_at:
            return
        fault = choose_fault(self.schedule_rng, profile, self._view())
        if fault is not None:
            if self.trace is not None:
                self.trace.update(repr(fault).encode())
            self._apply(fault, now)
        self._push(now + self.schedule_rng.expovariate(1 / profile.mean_gap), self._fault)

    def _view(self) -> ClusterView:
        up = [node for node in self.nodes if node.core is not None]
        leaders = [node for node in up if node.core is not None and node.core.role is _LEADER]
        return ClusterView(
            tuple(node.id for node in self.nodes),
            tuple(node.id for node in up),
            tuple(node.id for node in leaders),
        )

    def _apply(self, fault: Fault, now: float) -> None:
        if fault.kind == "weather":
            self._apply_weather(fault)
        elif fault.kind == "crash":
            self._crash_for(self.nodes[self.index[fault.nodes[0]]], fault.lasts, now)
        elif fault.kind == "shutdown":
            node = self.nodes[self.index[fault.nodes[0]]]
            heapq.heappush(
                self.heap, (now, next(self.sequence), _HAND_OVER, node.index, fault.lasts)
            )
        elif fault.kind == "step_down":
            node = self.nodes[self.index[fault.nodes[0]]]
            heapq.heappush(self.heap, (now, next(self.sequence), _HAND_OVER, node.index, None))
        elif fault.kind == "false_evidence":
            for node in self.nodes:
                if node.core is not None:
                    self._evidence(node, fault.nodes[0], now)
        elif fault.kind == "crash_next_voter":
            self.voter_trap = fault
        elif fault.kind == "crash_next_candidate":
            self.candidate_trap = fault
        else:
            self.cuts.append(fault)
            self._rebuild_cuts()
            self._push(now + fault.lasts, self._mend, fault)

    def _apply_weather(self, fault: Fault) -> None:
        network = self.network
        network.drop_rate = fault.drop_rate
        network.delay = fault.delay
        network.duplicate_rate = fault.duplicate_rate

    def _mend(self, now: float, fault: Fault) -> None:
        self.cuts = [cut for cut in self.cuts if cut is not fault]
        self._rebuild_cuts()

    def _rebuild_cuts(self) -> None:
        """Make the network's cuts exactly the ones still in force, in the order made."""
        network = self.network
        network.heal()
        for fault in self.cuts:
            if fault.kind == "isolate":
                network.isolate(fault.nodes[0])
            elif fault.kind == "partition":
                network.partition(*fault.groups)
            elif fault.kind == "cut":
                network.cut(*fault.nodes)
            else:
                network.cut_one_way(*fault.nodes)

    def _heal(self, now: float, _: object) -> None:
        self.healed = True
        self.voter_trap = None
        self.candidate_trap = None
        self.cuts.clear()
        self.network.heal()
        self._apply_weather(Fault("weather", delay=self.calm_delay))
        for node in self.nodes:
            if node.core is None:
                self._start(node, now)
        self._check_converged(now)

    # ------------------------------------------------------------------ the result

    def _result(self, now: float) -> SeedResult:
        self.exclusive.finish(min(now, self.duration))
        for node in self.nodes:
            if node.core is not None:
                self._collect(node.core)
        checker = self.checker
        after_heal = None if self.converged_at is None else self.converged_at - self.heal_at
        if not any(violation.kind == CORE_ERROR for violation in checker.violations):
            window = self.duration - self.heal_at
            if after_heal is None:
                checker.report(
                    NO_LEADER_AFTER_HEAL,
                    f"no leader known to all {len(self.nodes)} nodes in the {window:.2f}s "
                    f"after the heal at {self.heal_at:.2f}s (bound {self.bound:.2f}s)",
                    self.duration,
                )
            elif after_heal > self.bound:
                checker.report(
                    NO_LEADER_AFTER_HEAL,
                    f"a leader known to all nodes took {after_heal:.3f}s after the heal, "
                    f"over the bound of {self.bound:.3f}s",
                    self.converged_at or self.duration,
                )
        return SeedResult(
            seed=self.seed,
            nodes=len(self.nodes),
            simulated_seconds=min(now, self.duration),
            heal_at=self.heal_at,
            elections_started=self.counters["started"],
            elections_won=self.counters["won"],
            pre_votes_started=self.counters["pre_votes"],
            leader_changes=self.leader_changes,
            crashes=self.crashes,
            messages_sent=self.messages_sent,
            handovers=self.counters["handovers"],
            leader_down_reports=self.counters["leader_down"],
            events=self.events,
            highest_term=self.highest_term,
            leader_after_heal=after_heal,
            liveness_bound=self.bound,
            violations=tuple(checker.violations),
            trace_digest=None if self.trace is None else self.trace.hexdigest(),
        )

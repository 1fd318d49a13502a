"""One simulated run: N election cores, a simulated clock and a faulty network.

Nothing here reads a clock, sleeps or uses asyncio. Time is the time of the event being
handled; events wait in one heap ordered by time, then by a sequence number (see
:mod:`._events`), so two events at the same instant always run in the same order and a
seed replays exactly.

Each core's :class:`~almost_raft.Output` is carried out as the runtime does it: a
candidate's vote requests leave at once; a new hard state takes a save time drawn from
``FaultProfile.save_time``, during which the node takes no input (what arrives waits) and a
crash loses the save; then the other messages go to the network, the leadership news is
recorded, and a tick is scheduled for ``next_deadline``.

A run has two phases. Until ``heal_at`` the fault schedule crashes and restarts nodes,
cuts links and changes the network's weather (:mod:`._fault_injection` carries the faults
out). At ``heal_at`` every node is restarted, every link mended and the weather calmed;
from then on a leader known to every node must appear within :func:`liveness_bound`.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

from ..core._config import ElectionConfig
from ..core._configuration import Configuration
from ..core._messages import HeartBeat, RequestVote, RequestVoteResponse
from ..core._outputs import Outbound, Output
from ..core._state import NodeState
from ..core._state_machine import ElectionCore
from ..store._store import Store
from ..transport._faults import NetworkFaults
from ._checker import CORE_ERROR, Checker, liveness_bound
from ._clock import NodeClock
from ._events import (
    CALL,
    CHANGE,
    DELIVER,
    DISCONNECT,
    EVIDENCE,
    HAND_OVER,
    SAVED,
    TICK,
    CoreFactory,
    SimNode,
)
from ._exclusive import ExclusiveChecker
from ._fault_injection import FaultInjector
from ._operator import OPERATOR_CHECK, Operator
from ._result import SeedResult
from ._schedule import FaultProfile, choose_fault, weather
from ._stickiness import StickinessChecker
from ._view import cluster_view

__all__ = ["Simulation"]


_INF = math.inf
_LEADER = NodeState.LEADER
_TERMINATING = NodeState.TERMINATING


class Simulation(Operator):
    """One seed's run; built and run by :func:`~almost_raft.sim.run_seed`."""

    def __init__(
        self,
        seed: int,
        size: int,
        spares: int,
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
        self.network = NetworkFaults(random.Random(master.getrandbits(64)), delay=calm)
        # Drawn after the others, so adding it left their streams as they were.
        self.evidence_rng = random.Random(master.getrandbits(64))
        self.save_rng = random.Random(master.getrandbits(64))
        self.save_time = profile.save_time if profile is not None else FaultProfile().save_time
        clock_rng = random.Random(master.getrandbits(64))
        self.nodes = [
            SimNode(f"n{i + 1}", i, store_factory(), NodeClock.drawn(clock_rng, clock_drift))
            for i in range(size + spares)
        ]
        self.starting_members = [node.id for node in self.nodes[:size]]
        for node in self.nodes[size:]:
            node.active = False
        self.changes_refused = 0
        self.index = {node.id: node.index for node in self.nodes}
        self.checker = Checker()
        self.exclusive = ExclusiveChecker(self.checker)
        self.stickiness = StickinessChecker(self.checker, config.election_timeout)
        self.faults = FaultInjector(self.network, calm, self)
        self.heap: list[tuple[Any, ...]] = []
        self.sequence = itertools.count()
        self.bound = liveness_bound(config, calm[1])
        heal_window = min(duration, max(duration / 4, 2 * self.bound))
        self.heal_at = duration - heal_window if profile is not None else 0.0
        self.healed = False
        self.converged_at: float | None = None
        self.trace: Any = hashlib.sha256() if trace else None
        self.counters = {
            "started": 0,
            "won": 0,
            "pre_votes": 0,
            "handovers": 0,
            "leader_down": 0,
            "early_pre_votes": 0,
        }
        self.crashes = 0
        self.messages_sent = 0
        self.events = 0
        self.leader_changes = 0
        self.last_leader: str | None = None
        self.highest_term = 0

    # ------------------------------------------------------------------ the event loop

    def run(self) -> SeedResult:
        for node in self.nodes:
            if node.active:
                self._start(node, 0.0)
        if self.profile is not None:
            self.faults.apply_weather(weather(self.schedule_rng, self.profile))
            self._push(self.schedule_rng.expovariate(1 / self.profile.mean_gap), self._fault)
        self._push(self.heal_at, self._heal)
        return self._result(self._loop())

    def _loop(self) -> float:
        """Handle events in time order until ``duration``; return the time reached."""
        heap = self.heap
        pop = heapq.heappop
        end = self.duration
        trace = self.trace
        now = 0.0
        try:
            while heap:
                event = pop(heap)
                now = event[0]
                if now > end:
                    return end
                self.events += 1
                if trace is not None:
                    what = event[3].__name__ if event[2] == CALL else event[3]
                    trace.update(repr((now, event[2], what, event[4])).encode())
                self._dispatch(event, now)
        except Exception as exc:  # a core raised: a finding to report with its seed
            self.checker.report(CORE_ERROR, f"{type(exc).__name__}: {exc}", now)
            return now
        return end

    def _dispatch(self, event: tuple[Any, ...], now: float) -> None:
        """Route one event: to the simulation itself, or as an input to a running node."""
        kind = event[2]
        if kind == CALL:
            event[3](now, event[4])
            return
        node = self.nodes[event[3]]
        if node.core is None:
            return
        if kind == SAVED:
            incarnation, rest = event[4]
            if incarnation == node.incarnation:
                self._saved(node, rest, now)
            return
        if kind == TICK:
            if event[4] != node.generation:
                return
            node.timer_at = _INF
        if node.saves and self.hold_inputs:
            node.pending.append((kind, event[4]))
            return
        self._handle(node, kind, event[4], now)

    def _handle(self, node: SimNode, kind: int, arg: Any, now: float) -> None:
        """Feed one input to the node's core and carry out what it returns."""
        core = node.core
        assert core is not None, "inputs reach running nodes only"
        # The core reads its own clock; the events run on real time.
        local = node.clock.local(now)
        if kind == DELIVER:
            output = core.receive(arg, local)
            if (
                arg.__class__ is HeartBeat
                and core.leader_id == arg.leader_id
                and core.term == arg.term
            ):
                self.stickiness.heard(node.id, arg.leader_id, arg.term, local)
            self._carry_out(node, output, now)
        elif kind == TICK:
            deadline = core.next_deadline
            if local < deadline:
                self._arm(node, deadline)
            else:
                self._carry_out(node, core.tick(local), now)
        elif kind == EVIDENCE:
            self.stickiness.told_gone(node.id, arg)
            self._carry_out(node, core.peer_unreachable(arg, local), now)
        elif kind == DISCONNECT:
            # A hint, not evidence: the stickiness checker keeps what the node heard, and
            # lets the first in line's pre-vote be granted.
            self.stickiness.told_ended(node.id, arg, local)
            self._carry_out(node, core.peer_disconnected(arg, local), now)
        elif kind == CHANGE:
            self._change(node, core, arg, now)
        else:
            if arg is None:
                # A step-down: the leader hands over and runs on as a follower.
                self._carry_out(node, core.transfer_leadership(local), now)
                return
            # A clean shutdown: the core hands over and says when it is done (see
            # _publish); until then the node goes on answering.
            node.downtime = arg
            node.shutting_down = True
            self._carry_out(node, core.leave(local), now)

    def _carry_out(self, node: SimNode, output: Output, now: float) -> None:
        """The runtime's order: vote requests, durable state, other messages, news, timer."""
        hard_state = output.hard_state
        messages = output.messages
        if hard_state is None:
            if messages:
                self._send(node, messages, now)
            self._publish(node, output, now)
            return
        if not self.persist:
            self.checker.term_seen(node.id, hard_state.term, now)
            if messages:
                self._send(node, messages, now)
            self._publish(node, output, now)
            return
        requests = output.before_save()
        if requests:
            if hard_state.voted_for == node.id:
                self._campaign_started(node, hard_state.term, requests, now)
            self._send(node, requests, now)
        messages = output.after_save()
        low, high = self.save_time
        done_at = now + self.save_rng.uniform(low, high)
        node.saves += 1
        rest = Output(
            messages,
            hard_state,
            output.leader_change,
            output.role,
            output.next_deadline,
            output.committed,
            lease=output.lease,
        )
        if not self.hold_inputs:
            self._publish(node, output, now)
        heapq.heappush(
            self.heap, (done_at, next(self.sequence), SAVED, node.index, (node.incarnation, rest))
        )
        if requests and self.faults.candidate_trap is not None:
            # Crash a moment before the save ends, when the most has happened that a lost
            # save could contradict.
            self._push(max(now, done_at - 1e-6), self._spring_candidate_trap, node)

    def _saved(self, node: SimNode, rest: Output, now: float) -> None:
        """A save reached the disk: send what waited for it, then the held inputs."""
        hard_state = rest.hard_state
        assert hard_state is not None, "only a batch with a hard state waits for a save"
        self.checker.term_seen(node.id, hard_state.term, now)
        node.store.save(hard_state)
        node.saves -= 1
        if rest.messages:
            self._send(node, rest.messages, now)
        if self.hold_inputs:
            self._publish(node, rest, now)
            pending = node.pending
            while pending and not node.saves and node.core is not None:
                kind, arg = pending.pop(0)
                self._handle(node, kind, arg, now)

    def _send(self, node: SimNode, messages: tuple[Outbound, ...], now: float) -> None:
        # The hot path: what the loop reads for every message is bound once per batch.
        sender = node.id
        self.messages_sent += len(messages)
        deliveries = self.network.deliveries
        heap = self.heap
        sequence = self.sequence
        index = self.index
        push = heapq.heappush
        for outbound in messages:
            to = outbound.to
            message = outbound.message
            if message.__class__ is RequestVoteResponse and message.granted:
                if message.pre_vote:
                    self._pre_vote_sent(node, to, message.term, now)
                else:
                    self._vote_sent(node, to, message.term, now)
            for delay in deliveries(sender, to):
                push(heap, (now + delay, next(sequence), DELIVER, index[to], message))

    def _publish(self, node: SimNode, output: Output, now: float) -> None:
        if output.leader_change is not None or output.role is not None:
            self._news(node, output, now)
        if output.lease is not None:
            self.exclusive.lease(node.id, output.lease, node.clock, now)
        if output.committed is not None:
            # Published after the save: the leader's own copy counted towards it.
            self.checker.configuration_committed(node.id, output.committed, now)
        self._arm(node, output.next_deadline)
        if output.role is NodeState.TERMINATING:
            # The core left the election: the process exits. After a clean shutdown it is
            # started again later (at once after the heal, when every node must be up);
            # one that learned it was removed, only once it is added back.
            if node.active:
                self._crash_for(node, 0.0 if self.healed else node.downtime, now)
            else:
                self._crash(node, now)

    def _push(self, when: float, action: Callable[[float, Any], None], arg: Any = None) -> None:
        heapq.heappush(self.heap, (when, next(self.sequence), CALL, action, arg))

    def _arm(self, node: SimNode, local_deadline: float) -> None:
        deadline = node.clock.real(local_deadline)
        if deadline < node.timer_at:
            node.generation += 1
            node.timer_at = deadline
            heapq.heappush(
                self.heap, (deadline, next(self.sequence), TICK, node.index, node.generation)
            )

    # ------------------------------------------------------------------ what the checker sees

    def _vote_sent(self, node: SimNode, candidate: str, term: int, now: float) -> None:
        self.checker.vote_sent(node.id, candidate, term, now)
        if self.faults.voter_trap is not None:
            # Crash once the whole batch is out, as a process dies after its send returns.
            self._push(now, self._spring_voter_trap, node)

    def _campaign_started(
        self, node: SimNode, term: int, requests: tuple[Outbound, ...], now: float
    ) -> None:
        """``node`` saves ``term`` with its own vote and asks for votes: an election."""
        for outbound in requests:
            request = outbound.message
            if request.__class__ is RequestVote:
                assert isinstance(request, RequestVote)
                if not request.pre_vote and not request.transfer:
                    self.stickiness.campaigned(node.id, term, node.clock.local(now), now)
                return

    def _pre_vote_sent(self, node: SimNode, candidate: str, term: int, now: float) -> None:
        core = node.core
        assert core is not None, "only a running node answers"
        local = node.clock.local(now)
        self.stickiness.granted_pre_vote(
            node.id, core.term, candidate, term, local, now, core.peers | {node.id}
        )

    def _news(self, node: SimNode, output: Output, now: float) -> None:
        news = output.leader_change
        if news is not None:
            node.news = (news.leader_id, news.term)
            if self.healed and self.converged_at is None:
                self._check_converged(now)
        if output.role is _LEADER:
            assert node.core is not None
            self._became_leader(node, node.core.term, now)
        elif output.role is _TERMINATING:
            assert node.core is not None
            if node.id not in node.core.configuration.ids and not node.shutting_down:
                # It learned it was removed: its process ends, and it may be added again.
                # A clean shutdown is no removal, even when the configuration it holds
                # leaves it out: that is its own removal still pending (a leader that was
                # asked to remove itself), which may never commit. Its voters then
                # still need it, and only it can finish the removal once back (thesis
                # 4.2.2), so it is started again after its downtime like any other.
                self.checker.left_as_removed(node.id, node.core.configuration, now)
                node.active = False
                self._push(now + OPERATOR_CHECK, self._restart_if_member, node)

    def _became_leader(self, node: SimNode, term: int, now: float) -> None:
        self.checker.became_leader(node.id, term, now)
        if node.id != self.last_leader:
            self.leader_changes += 1
            self.last_leader = node.id

    def _check_converged(self, now: float) -> None:
        """Whether every member of the leader's configuration is up and names it."""
        leader_node = self._newest_leader()
        if leader_node is None:
            return
        leader = leader_node.core
        assert leader is not None
        news = (leader_node.id, leader.term)
        if leader_node.news != news:
            return
        for member in leader.configuration.ids:
            node = self.nodes[self.index[member]]
            if node.core is None or node.news != news:
                return
        self.converged_at = now

    def _newest_leader(self) -> SimNode | None:
        """The running node that leads the highest term, if any."""
        best: SimNode | None = None
        best_term = -1
        for node in self.nodes:
            core = node.core
            if core is not None and core.role is _LEADER and core.term > best_term:
                best, best_term = node, core.term
        return best

    # ------------------------------------------------------------------ crashes

    def _start(self, node: SimNode, now: float) -> None:
        rng = random.Random(self.core_seeds.getrandbits(64))
        peers = [member for member in self.starting_members if member != node.id]
        core = self.core_factory(
            node.id, peers, self.config, rng, node.clock.local(now), node.store.load()
        )
        node.core = core
        node.news = (None, 0)
        node.shutting_down = False
        node.started_at = now
        self.checker.term_seen(node.id, core.term, now)
        self._arm(node, core.next_deadline)

    def _crash(self, node: SimNode, now: float) -> None:
        core = node.core
        if core is None:
            return
        self._collect(core)
        self.exclusive.stopped(node.id, now)
        self.stickiness.crashed(node.id)
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
        # Its host closes its connections and refuses new ones, as the TCP transport
        # sees it: each node it can reach sees its connection end one delay later (a
        # hint), and a round trip after that its redial refused (the evidence).
        for other in self.nodes:
            if other.core is None:
                continue
            ended = self._transit(node.id, other.id)
            if ended is None:
                continue
            self._push_input(other, DISCONNECT, node.id, now + ended)
            there, back = self._transit(other.id, node.id), self._transit(node.id, other.id)
            if there is not None and back is not None:
                self._push_input(other, EVIDENCE, node.id, now + ended + there + back)

    def _transit(self, sender: str, receiver: str) -> float | None:
        """How late a packet TCP gets through arrives (a connection's end, a dial, a
        reset): the network's delay, or None if the link is cut. TCP resends what is
        lost, so loss does not apply; the draw comes from its own stream."""
        if not self.network.can_reach(sender, receiver):
            return None
        low, high = self.network.delay
        return self.evidence_rng.uniform(low, high)

    def _push_input(self, node: SimNode, kind: int, about: str, when: float) -> None:
        heapq.heappush(self.heap, (when, next(self.sequence), kind, node.index, about))

    def _crash_for(self, node: SimNode, downtime: float, now: float) -> None:
        self._crash(node, now)
        self._push(now + downtime, self._restart, node)

    def _spring_voter_trap(self, now: float, node: SimNode) -> None:
        trap = self.faults.voter_trap
        self.faults.voter_trap = None
        if trap is not None and now < self.heal_at:
            self._crash_for(node, trap.lasts, now)

    def _spring_candidate_trap(self, now: float, node: SimNode) -> None:
        trap = self.faults.candidate_trap
        if trap is not None and now < self.heal_at and node.saves and node.core is not None:
            self.faults.candidate_trap = None
            self._crash_for(node, trap.lasts, now)

    def _restart(self, now: float, node: SimNode) -> None:
        if node.core is None and node.active:
            self._start(node, now)

    def _collect(self, core: ElectionCore) -> None:
        metrics = core.metrics
        self.counters["started"] += metrics.elections_started
        self.counters["won"] += metrics.elections_won
        self.counters["pre_votes"] += metrics.pre_votes_started
        self.counters["handovers"] += metrics.handovers_received
        self.counters["leader_down"] += metrics.leader_down_reports
        self.counters["early_pre_votes"] += metrics.early_pre_votes
        self.highest_term = max(self.highest_term, core.term)

    # ------------------------------------------------------------------ faults

    def _fault(self, now: float, _: object) -> None:
        profile = self.profile
        if profile is None or now >= self.heal_at:
            return
        fault = choose_fault(
            self.schedule_rng, profile, cluster_view(self.nodes, self._newest_leader())
        )
        if fault is not None:
            if self.trace is not None:
                self.trace.update(repr(fault).encode())
            self.faults.apply(fault, now)
        self._push(now + self.schedule_rng.expovariate(1 / profile.mean_gap), self._fault)

    # The injector's view of the cluster (see _fault_injection.Cluster).

    def crash_for(self, node_id: str, downtime: float, now: float) -> None:
        self._crash_for(self.nodes[self.index[node_id]], downtime, now)

    def shut_down(self, node_id: str, downtime: float | None, now: float) -> None:
        node = self.nodes[self.index[node_id]]
        heapq.heappush(self.heap, (now, next(self.sequence), HAND_OVER, node.index, downtime))

    def report_gone(self, about: str, now: float) -> None:
        for node in self.nodes:
            if node.core is not None:
                self._push_input(node, EVIDENCE, about, now)

    def report_disconnected(self, about: str, now: float) -> None:
        for node in self.nodes:
            if node.core is not None and node.id != about:
                self._push_input(node, DISCONNECT, about, now)

    def call_at(self, when: float, action: Callable[[float, Any], None], arg: Any) -> None:
        self._push(when, action, arg)

    def _heal(self, now: float, _: object) -> None:
        self.healed = True
        self.faults.heal()
        for node in self.nodes:
            if node.core is None and node.active:
                self._start(node, now)
        self._check_converged(now)

    # ------------------------------------------------------------------ the result

    def _check_removed_left(self, end: float) -> None:
        """Every node that the newest leader's committed configuration left out, and
        that runs with a leader's configuration, has learned it and left by ``end``.

        A removed node asks only the members of the configuration it holds: its voters,
        with its pre-votes, or, as a non-voter, every member. One that none of those,
        still a member and running, can answer is not held to it.
        """
        newest = self._newest_leader()
        leader = None if newest is None else newest.core
        committed = None if leader is None else leader.committed_configuration
        if leader is None or committed is None:
            return
        members = leader.configuration.ids
        running = {
            node.id
            for node in self.nodes
            if node.core is not None and node.core.role is not _TERMINATING
        }
        for node in self.nodes:
            core = node.core
            if (
                core is None
                or core.role is _TERMINATING
                or node.id in committed.ids
                or node.id in members
                # A new machine, started before it is added, holds its starting one.
                or core.configuration.version == 0
                or not _asked(node.id, core.configuration) & members & running
            ):
                continue
            self.checker.removed_member_ran(
                node.id, committed, node.started_at, end=end, bound=self.bound
            )

    def _result(self, now: float) -> SeedResult:
        self.exclusive.finish(min(now, self.duration))
        for node in self.nodes:
            if node.core is not None:
                self._collect(node.core)
        checker = self.checker
        after_heal = None if self.converged_at is None else self.converged_at - self.heal_at
        if not any(violation.kind == CORE_ERROR for violation in checker.violations):
            checker.leader_after_heal(
                self.converged_at,
                nodes=len(self.nodes),
                heal_at=self.heal_at,
                end=self.duration,
                bound=self.bound,
            )
            self._check_removed_left(min(now, self.duration))
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
            early_pre_votes=self.counters["early_pre_votes"],
            events=self.events,
            highest_term=self.highest_term,
            leader_after_heal=after_heal,
            liveness_bound=self.bound,
            violations=tuple(checker.violations),
            trace_digest=None if self.trace is None else self.trace.hexdigest(),
            configurations_committed=checker.versions_committed,
        )


def _asked(node_id: str, config: Configuration) -> frozenset[str]:
    """Whom a node holding ``config`` asks when it hears no leader (see _removal)."""
    if node_id in config.voters or node_id not in config.ids:
        return config.voters - {node_id}
    return config.ids - {node_id}

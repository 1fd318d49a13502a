"""A cluster of election cores on a scripted network, one small handler per command.

Every node has its own clock (the core needs only that its own time never goes back) and
its own seeded ``random.Random``, so a transcript replays exactly. Messages a core sends
are held "in flight" until a ``deliver`` or ``stabilize`` command hands them over, which
lets a transcript show every step of an election. Outputs are carried out as the runtime
would: the hard state is saved to the node's store, then the messages leave.

Commands (``name positional... key=value...``):

- ``add-nodes a b c [seed=1] [election-timeout=1] [election-timeout-max=2] [heartbeat=0.1]
  [pre-vote=true] [check-quorum=true] [min-peers=0] [max-nodes=N] [peers=a,b|none]
  [leader-down-delay=S]``
- ``tick <seconds> [node...]``: advance the clocks of the named (default: all live) nodes,
  firing every deadline on the way in time order. Sent messages stay in flight.
- ``campaign <node>``: advance one node's clock to its election deadline and fire it.
- ``run <seconds>``: advance all live nodes together, delivering every message at once;
  prints only log lines and leadership changes, not the messages.
- ``deliver [from=x] [to=y]``: deliver the messages now in flight (one round); what they
  cause stays in flight. ``stabilize`` delivers rounds until nothing is in flight.
- ``drop [from=x] [to=y]`` and ``duplicate [from=x] [to=y]``: lose or double messages in
  flight. ``in-flight [from=x] [to=y]`` (or ``outbox``) lists them.
- ``cut a b``, ``cut-one-way a b``, ``isolate a``, ``partition a,b c``, ``heal``.
- ``crash a`` (the stored hard state survives), ``restart a``, ``terminate a``.
- ``leave a [hand-over=true]``: ``a`` leaves the election (a leader hands over first and
  stays until its deadline, as a shut-down process does); ``hand-over a [to=b]``: ``a``
  transfers leadership and stays a member.
- ``peer-unreachable a b``: ``a``'s transport has evidence that ``b``'s process is gone.
- ``peer-disconnected a b``: ``a``'s connection to ``b`` was ended by ``b``'s side.
- ``add-peer a d``, ``remove-peer a d``: membership changes on node ``a``.
- ``transfer a [to=b]``: leader ``a`` hands leadership over (TimeoutNow).
- ``unreachable a about=b``: the transport tells ``a`` that ``b``'s process is gone.
- ``add-member a d [non-voter]``, ``remove-member a d``, ``promote a d``: ask node ``a``
  for a change of the configuration; a refusal prints its error. ``members [node...]``
  shows each node's configuration and the newest it knows committed.
- ``inject <to> <Kind> term=N from=x [pre] [granted|refused] [stale-config]``: hand one
  crafted message to a node at once (a vote request names the receiver's configuration,
  or none with ``stale-config``).
- ``status [node...]``, ``metrics <node>``.

A batch's lease is shown when a lease of a new term begins (``lease term=N from=T``) and
when it ends; its renewals are not, but ``status`` shows a leader's current lease.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import random
from collections.abc import Callable, Iterator

from almost_raft import (
    ConfigError,
    ElectionConfig,
    ElectionCore,
    HeartBeat,
    HeartBeatResponse,
    Member,
    MembershipChangeError,
    MembershipQuery,
    MemoryStore,
    NetworkFaults,
    NodeState,
    Output,
    PeerMessage,
    RemovalNotice,
    RequestVote,
    RequestVoteResponse,
)
from almost_raft.sim import CoreFactory
from almost_raft.sim._checker import Checker

__all__ = ["Env", "format_message"]

_MAX_ROUNDS = 1000


@dataclasses.dataclass(slots=True)
class SimNode:
    """One member of the scripted cluster; ``core`` is ``None`` while it is crashed."""

    node_id: str
    config: ElectionConfig
    peers: frozenset[str]
    store: MemoryStore
    clock: float
    core: ElectionCore | None = None
    starts: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class InFlight:
    """A message on the wire from ``src`` to ``dst``."""

    src: str
    dst: str
    message: PeerMessage


class Args:
    """A command's arguments: positional words and ``key=value`` options."""

    def __init__(self, words: list[str]) -> None:
        self.positional = [w for w in words if "=" not in w]
        self.options = dict(w.split("=", 1) for w in words if "=" in w)

    def flag(self, key: str, default: bool) -> bool:
        value = self.options.get(key)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value == "true"

    def number(self, key: str, default: float) -> float:
        value = self.options.get(key)
        return default if value is None else float(value)


def format_message(src: str, dst: str, message: PeerMessage) -> str:
    """One message as a transcript shows it: ``a->b RequestVote term=2 pre``."""
    parts = [f"{src}->{dst}", type(message).__name__, f"term={message.term}"]
    if isinstance(message, RequestVoteResponse):
        parts.append("granted" if message.granted else "refused")
    if isinstance(message, RequestVote | RequestVoteResponse) and message.pre_vote:
        parts.append("pre")
    if isinstance(message, RequestVote) and message.transfer:
        parts.append("transfer")
    if isinstance(message, RequestVoteResponse) and message.promise_left > 0:
        parts.append(f"promise-left={message.promise_left:.3f}")
    if isinstance(message, RequestVote | HeartBeatResponse | MembershipQuery) and (
        message.config_version
    ):
        parts.append(f"config=v{message.config_version}/t{message.config_term}")
    if isinstance(message, HeartBeat):
        if message.configuration is not None:
            parts.append(f"config=v{message.configuration.version}")
        if message.committed_version:
            parts.append(f"committed=v{message.committed_version}")
    if isinstance(message, RemovalNotice):
        parts.append(f"config={message.configuration.describe()}")
    if message.sender != src:
        parts.append(f"claims-sender={message.sender}")
    return " ".join(parts)


def _time(value: float) -> str:
    return "none" if math.isinf(value) else f"{value:.3f}"


class _Capture(logging.Handler):
    """Collects the core's log lines of level INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


class Env:
    """The scripted cluster. Call :meth:`handle` with one command line per case."""

    def __init__(
        self, core_factory: CoreFactory = ElectionCore, checker: Checker | None = None
    ) -> None:
        # A broken core can be run through a transcript's commands, and a checker shown
        # what the nodes announce, to prove the checker sees what the transcript shows.
        self.core_factory = core_factory
        self.checker = checker
        self.nodes: dict[str, SimNode] = {}
        self.in_flight: list[InFlight] = []
        self.faults = NetworkFaults(random.Random(0))
        self.seed = "1"
        self._capture = _Capture()
        # Per node, the term of the last lease shown and whether it was shown ended.
        self._lease_shown: dict[str, tuple[int, bool]] = {}
        self._handlers: dict[str, Callable[[Args], list[str]]] = {
            "add-nodes": self._add_nodes,
            "tick": self._tick,
            "campaign": self._campaign,
            "run": self._run,
            "deliver": self._deliver,
            "stabilize": self._stabilize,
            "drop": self._drop,
            "duplicate": self._duplicate,
            "in-flight": self._in_flight,
            "outbox": self._in_flight,
            "cut": self._cut,
            "cut-one-way": self._cut_one_way,
            "isolate": self._isolate,
            "partition": self._partition,
            "heal": self._heal,
            "crash": self._crash,
            "restart": self._restart,
            "terminate": self._terminate,
            "leave": self._leave,
            "hand-over": self._hand_over,
            "peer-unreachable": self._peer_unreachable,
            "peer-disconnected": self._peer_disconnected,
            "add-peer": self._add_peer,
            "add-member": self._add_member,
            "remove-member": self._remove_member,
            "promote": self._promote,
            "members": self._members,
            "remove-peer": self._remove_peer,
            "transfer": self._transfer,
            "unreachable": self._unreachable,
            "inject": self._inject,
            "status": self._status,
            "metrics": self._metrics,
        }

    # ------------------------------------------------------------------ driving

    def __enter__(self) -> Env:
        logger = logging.getLogger("almost_raft.core")
        self._saved_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self._capture)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("almost_raft.core")
        logger.removeHandler(self._capture)
        logger.setLevel(self._saved_level)

    def handle(self, command: str) -> list[str]:
        """Run one command line and return its output lines (``ok`` if there are none)."""
        name, *words = command.split()
        handler = self._handlers.get(name)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        lines = handler(Args(words))
        return lines or ["ok"]

    def _live(self, node_id: str) -> tuple[SimNode, ElectionCore]:
        node = self.nodes[node_id]
        if node.core is None:
            raise ValueError(f"node {node_id} is down")
        return node, node.core

    def _live_ids(self, names: list[str]) -> list[str]:
        chosen = names or sorted(self.nodes)
        return [n for n in chosen if self.nodes[n].core is not None]

    def _call(
        self, node_id: str, action: Callable[[ElectionCore], Output], indent: str = ""
    ) -> list[str]:
        """Give one input to a core and carry out its output batch, as the runtime does."""
        node, core = self._live(node_id)
        dropped_before = collections.Counter(core.metrics.dropped)
        self._capture.lines.clear()
        out = action(core)
        lines = list(self._capture.lines)
        self._capture.lines.clear()
        for reason, count in sorted((core.metrics.dropped - dropped_before).items()):
            lines.extend([f"{node_id}: dropped ({reason})"] * count)
        if out.hard_state is not None:
            node.store.save(out.hard_state)
            config = out.hard_state.configuration
            lines.append(
                f"{node_id}: persist term={out.hard_state.term} "
                f"vote={out.hard_state.voted_for or 'none'}"
                + (f" config=v{config.version}" if config is not None else "")
            )
        if out.role is not None:
            lines.append(f"{node_id}: role {out.role.value}")
        if self.checker is not None:
            if out.role is NodeState.LEADER:
                self.checker.became_leader(node_id, core.term, node.clock)
            if out.committed is not None:
                self.checker.configuration_committed(node_id, out.committed, node.clock)
        if out.leader_change is not None:
            change = out.leader_change
            lines.append(f"{node_id}: leader {change.leader_id or 'none'} term={change.term}")
        if out.lease is not None:
            lines.extend(self._lease_lines(node, out))
        # The save above is instant, so the messages that could have left during it and
        # those that waited for it leave together, in the order a driver sends them.
        for outbound in out.before_save() + out.after_save():
            self.in_flight.append(InFlight(node_id, outbound.to, outbound.message))
            lines.append(format_message(node_id, outbound.to, outbound.message))
        return [indent + line for line in lines]

    def _lease_lines(self, node: SimNode, out: Output) -> list[str]:
        lease = out.lease
        assert lease is not None
        ended = lease.until <= node.clock
        if self._lease_shown.get(node.node_id) == (lease.term, ended):
            return []
        self._lease_shown[node.node_id] = (lease.term, ended)
        if ended:
            return [f"{node.node_id}: lease term={lease.term} ended"]
        return [f"{node.node_id}: lease term={lease.term} from={lease.start:.3f}"]

    def _start(self, node: SimNode) -> None:
        rng = random.Random(f"{self.seed}/{node.node_id}/{node.starts}")
        node.starts += 1
        node.core = self.core_factory(
            node.node_id, node.peers, node.config, rng, node.clock, node.store.load()
        )

    def _status_line(self, node: SimNode) -> str:
        if node.core is None:
            state = node.store.load()
            term, vote = (state.term, state.voted_for) if state else (0, None)
            return f"{node.node_id}: down term={term} vote={vote or 'none'}"
        core = node.core
        line = (
            f"{node.node_id}: {core.role.value} term={core.term} vote={core.voted_for or 'none'} "
            f"leader={core.leader_id or 'none'} clock={node.clock:.3f} "
            f"deadline={_time(core.next_deadline)}"
        )
        lease = core.lease
        if lease is not None and lease.until > node.clock:
            line += f" lease={_time(lease.start)}..{_time(lease.until)}"
        return line

    # ------------------------------------------------------------------ time

    def _advance(self, seconds: float, names: list[str]) -> Iterator[tuple[str, float]]:
        """Move the named nodes' clocks on by ``seconds``, yielding each deadline to fire.

        All the clocks move together, so deadlines fire in the order they fall due.
        """
        start = {n: self.nodes[n].clock for n in names}
        for _ in range(_MAX_ROUNDS * 10):
            due = []
            for n in names:
                core = self.nodes[n].core
                if core is not None and core.next_deadline - start[n] <= seconds:
                    due.append((core.next_deadline - start[n], n, core.next_deadline))
            if not due:
                break
            offset, node_id, deadline = min(due)
            for n in names:
                self.nodes[n].clock = max(self.nodes[n].clock, start[n] + offset)
            self.nodes[node_id].clock = max(self.nodes[node_id].clock, deadline)
            yield node_id, self.nodes[node_id].clock
        else:
            raise RuntimeError("deadlines keep falling due; is a deadline not moving on?")
        for n in names:
            self.nodes[n].clock = max(self.nodes[n].clock, start[n] + seconds)

    def _fire(self, node_id: str, now: float) -> list[str]:
        return [
            f"{node_id}: timeout at {now:.3f}",
            *self._call(node_id, lambda c: c.tick(now), "  "),
        ]

    def _tick(self, args: Args) -> list[str]:
        seconds, *names = args.positional
        lines: list[str] = []
        for node_id, now in self._advance(float(seconds), self._live_ids(names)):
            lines.extend(self._fire(node_id, now))
        return lines

    def _campaign(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        node, core = self._live(node_id)
        node.clock = max(node.clock, core.next_deadline)
        return self._fire(node_id, node.clock)

    def _run(self, args: Args) -> list[str]:
        (seconds,) = args.positional
        names = self._live_ids([])
        lines: list[str] = []
        delivered = 0
        lost = 0
        for node_id, now in self._advance(float(seconds), names):
            fired = self._fire(node_id, now)[1:]
            lines.extend(f"{now:.3f} {line.strip()}" for line in fired if "->" not in line)
            for _ in range(_MAX_ROUNDS):
                if not self.in_flight:
                    break
                for line in self._deliver_round(lambda m: True):
                    if line.startswith("  lost:"):
                        lost += 1
                    elif line.startswith("  ") and "->" not in line:
                        lines.append(f"{now:.3f} {line.strip()}")
                    elif not line.startswith(" "):
                        delivered += 1
        lines.append(f"({delivered - lost} messages delivered, {lost} lost)")
        return lines

    # ------------------------------------------------------------------ the network

    def _matcher(self, args: Args) -> Callable[[InFlight], bool]:
        src, dst = args.options.get("from"), args.options.get("to")
        return lambda m: (src is None or m.src == src) and (dst is None or m.dst == dst)

    def _deliver_round(self, match: Callable[[InFlight], bool]) -> list[str]:
        batch = [m for m in self.in_flight if match(m)]
        self.in_flight = [m for m in self.in_flight if not match(m)]
        lines: list[str] = []
        for m in batch:
            lines.append(format_message(m.src, m.dst, m.message))
            target = self.nodes.get(m.dst)
            if target is None or target.core is None:
                lines.append(f"  lost: {m.dst} is down")
            elif not self.faults.can_reach(m.src, m.dst):
                lines.append("  lost: the link is cut")
            else:
                lines.extend(self._receive(m.dst, m.message))
        return lines

    def _receive(self, node_id: str, message: PeerMessage) -> list[str]:
        now = self.nodes[node_id].clock
        return self._call(node_id, lambda core: core.receive(message, now), "  ")

    def _deliver(self, args: Args) -> list[str]:
        return self._deliver_round(self._matcher(args))

    def _stabilize(self, args: Args) -> list[str]:
        match = self._matcher(args)
        lines: list[str] = []
        for _ in range(_MAX_ROUNDS):
            if not any(match(m) for m in self.in_flight):
                return lines
            lines.extend(self._deliver_round(match))
        raise RuntimeError("the cluster never went quiet")

    def _drop(self, args: Args) -> list[str]:
        match = self._matcher(args)
        lines = [
            f"dropped {format_message(m.src, m.dst, m.message)}" for m in self.in_flight if match(m)
        ]
        self.in_flight = [m for m in self.in_flight if not match(m)]
        return lines

    def _duplicate(self, args: Args) -> list[str]:
        match = self._matcher(args)
        copies = [m for m in self.in_flight if match(m)]
        self.in_flight.extend(copies)
        return [f"duplicated {format_message(m.src, m.dst, m.message)}" for m in copies]

    def _in_flight(self, args: Args) -> list[str]:
        match = self._matcher(args)
        shown = [format_message(m.src, m.dst, m.message) for m in self.in_flight if match(m)]
        return shown or ["none"]

    def _cut(self, args: Args) -> list[str]:
        a, b = args.positional
        self.faults.cut(a, b)
        return []

    def _cut_one_way(self, args: Args) -> list[str]:
        a, b = args.positional
        self.faults.cut_one_way(a, b)
        return []

    def _isolate(self, args: Args) -> list[str]:
        for node_id in args.positional:
            self.faults.isolate(node_id)
        return []

    def _partition(self, args: Args) -> list[str]:
        self.faults.partition(*(group.split(",") for group in args.positional))
        return []

    def _heal(self, args: Args) -> list[str]:
        self.faults.heal()
        return []

    # ------------------------------------------------------------------ nodes

    def _add_nodes(self, args: Args) -> list[str]:
        self.seed = args.options.get("seed", self.seed)
        max_nodes = args.options.get("max-nodes")
        high = args.options.get("election-timeout-max")
        leader_down = args.options.get("leader-down-delay")
        config = ElectionConfig(
            election_timeout=args.number("election-timeout", 1.0),
            election_timeout_max=None if high is None else float(high),
            heartbeat_interval=args.number("heartbeat", 0.1),
            min_peers=int(args.number("min-peers", 0)),
            max_nodes=None if max_nodes is None else int(max_nodes),
            pre_vote=args.flag("pre-vote", True),
            check_quorum=args.flag("check-quorum", True),
            leader_down_delay=None if leader_down is None else float(leader_down),
        )
        peers_option = args.options.get("peers")
        if peers_option is None:
            members = frozenset(args.positional)
        elif peers_option == "none":
            members = frozenset()
        else:
            members = frozenset(peers_option.split(","))
        lines = []
        for node_id in args.positional:
            node = SimNode(node_id, config, members - {node_id}, MemoryStore(), 0.0)
            self.nodes[node_id] = node
            self._start(node)
            lines.append(self._status_line(node))
        return lines

    def _crash(self, args: Args) -> list[str]:
        lines = []
        for node_id in args.positional:
            node, core = self._live(node_id)
            node.peers = core.peers
            node.core = None
            lines.append(self._status_line(node))
        return lines

    def _restart(self, args: Args) -> list[str]:
        lines = []
        for node_id in args.positional:
            node = self.nodes[node_id]
            if node.core is not None:
                raise ValueError(f"node {node_id} is running")
            self._start(node)
            lines.append(self._status_line(node))
        return lines

    def _terminate(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        node = self.nodes[node_id]
        return self._call(node_id, lambda c: c.terminate(node.clock))

    def _leave(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        node = self.nodes[node_id]
        hand_over = args.flag("hand-over", True)
        return self._call(node_id, lambda c: c.leave(node.clock, hand_over=hand_over))

    def _hand_over(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        node = self.nodes[node_id]
        to = args.options.get("to")
        return self._call(node_id, lambda c: c.transfer_leadership(node.clock, to))

    def _peer_unreachable(self, args: Args) -> list[str]:
        node_id, peer = args.positional
        node = self.nodes[node_id]
        return self._call(node_id, lambda c: c.peer_unreachable(peer, node.clock))

    def _peer_disconnected(self, args: Args) -> list[str]:
        node_id, peer = args.positional
        node = self.nodes[node_id]
        return self._call(node_id, lambda c: c.peer_disconnected(peer, node.clock))

    def _add_peer(self, args: Args) -> list[str]:
        node_id, peer = args.positional
        node = self.nodes[node_id]
        return self._call(node_id, lambda c: c.add_peer(peer, node.clock))

    def _transfer(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        node = self.nodes[node_id]
        to = args.options.get("to")
        return self._call(node_id, lambda c: c.transfer_leadership(node.clock, to))

    def _unreachable(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        node = self.nodes[node_id]
        about = args.options["about"]
        return self._call(node_id, lambda c: c.peer_unreachable(about, node.clock))

    def _remove_peer(self, args: Args) -> list[str]:
        node_id, peer = args.positional
        node = self.nodes[node_id]
        return self._call(node_id, lambda c: c.remove_peer(peer, node.clock))

    def _add_member(self, args: Args) -> list[str]:
        node_id, peer = args.positional[:2]
        member = Member(peer, voter="non-voter" not in args.positional[2:])
        return self._change(node_id, lambda c, now: c.add_member(member, now))

    def _remove_member(self, args: Args) -> list[str]:
        node_id, peer = args.positional
        return self._change(node_id, lambda c, now: c.remove_member(peer, now))

    def _promote(self, args: Args) -> list[str]:
        node_id, peer = args.positional
        return self._change(node_id, lambda c, now: c.promote_member(peer, now))

    def _change(self, node_id: str, action: Callable[[ElectionCore, float], Output]) -> list[str]:
        node = self.nodes[node_id]
        try:
            return self._call(node_id, lambda c: action(c, node.clock))
        except (ConfigError, MembershipChangeError) as exc:
            return [f"{node_id}: refused: {type(exc).__name__}: {exc}"]

    def _members(self, args: Args) -> list[str]:
        lines = []
        for n in args.positional or sorted(self.nodes):
            core = self.nodes[n].core
            if core is None:
                lines.append(f"{n}: down")
                continue
            committed = core.committed_configuration
            lines.append(
                f"{n}: {core.configuration.describe()} committed="
                + (f"v{committed.version}" if committed is not None else "none")
            )
        return lines

    def _inject(self, args: Args) -> list[str]:
        to, kind = args.positional[:2]
        words = set(args.positional[2:])
        term = int(args.options["term"])
        sender = args.options["from"]
        message: PeerMessage
        if kind == "RequestVote":
            # As from a candidate as up to date as the receiver, unless ``stale-config``.
            config = self._live(to)[1].configuration
            fresh = "stale-config" not in words
            message = RequestVote(
                term,
                sender,
                pre_vote="pre" in words,
                config_term=config.term if fresh else 0,
                config_version=config.version if fresh else 0,
            )
        elif kind == "RequestVoteResponse":
            message = RequestVoteResponse(
                term, sender, granted="granted" in words, pre_vote="pre" in words
            )
        elif kind == "HeartBeat":
            message = HeartBeat(term, sender)
        elif kind == "HeartBeatResponse":
            message = HeartBeatResponse(term, sender)
        else:
            raise ValueError(f"unknown message kind {kind!r}")
        return [format_message(sender, to, message), *self._receive(to, message)]

    def _status(self, args: Args) -> list[str]:
        return [self._status_line(self.nodes[n]) for n in args.positional or sorted(self.nodes)]

    def _metrics(self, args: Args) -> list[str]:
        (node_id,) = args.positional
        _, core = self._live(node_id)
        m = core.metrics
        dropped = " ".join(f"{k}={v}" for k, v in sorted(m.dropped.items())) or "none"
        return [
            f"{node_id}: pre_votes_started={m.pre_votes_started} "
            f"elections_started={m.elections_started} elections_won={m.elections_won} "
            f"leader_changes={m.leader_changes}",
            f"{node_id}: dropped {dropped}",
        ]

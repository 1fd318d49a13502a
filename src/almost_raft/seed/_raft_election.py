"""The seed's API: ``RaftElectionState.init`` and ``raft_election``, as in the Rust crate.

The crate's mpsc channels are asyncio queues here. The user implements :class:`Node`
for each peer (how to reach it) and delivers each message a peer sends by putting it on
this node's ``to_raft`` queue, together with the control messages ``ControlAddNode`` and
``ControlRemoveNode``. Leadership news arrives on the user's ``tx`` queue as
``ControlLeaderChanged``. Underneath runs the same runtime and core as :class:`Election`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import Any

from ..core._config import ElectionConfig
from ..core._errors import ConfigError, ElectionClosed
from ..core._messages import Message, PeerMessage
from ..core._outputs import LeaderChange
from ..core._state import NodeState
from ..core._validation import check_cluster_size, check_id
from ..runtime._driver import Runtime
from ..store._store import MemoryStore, Store
from ..transport._interface import Inbox, Transport
from ._messages import ControlAddNode, ControlLeaderChanged, ControlRemoveNode
from ._node import Node

__all__ = ["RaftElectionState", "raft_election"]

logger = logging.getLogger("almost_raft.seed")


class _Stopped(Message):
    """Put on ``to_raft`` when the election's task ends, to wake the reader."""

    __slots__ = ()


class _LeaveNow(Message):
    """Put on ``to_raft`` when this leader could not remove itself: it leaves at once."""

    __slots__ = ()


class _NodeTransport(Transport):
    """Sends through the user's :class:`Node` objects; receiving is the ``to_raft`` queue."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self._nodes = nodes

    async def start(self, node_id: str, inbox: Inbox) -> None:
        pass

    async def send(self, to: str, message: PeerMessage) -> None:
        node = self._nodes.get(to)
        if node is None:
            raise LookupError(f"no Node for peer {to!r}")
        await node.send_message(message)

    async def close(self) -> None:
        pass


class RaftElectionState:
    """One node's election, as the seed's ``RaftElectionState``.

    Build it with :meth:`init`, run it with :func:`raft_election`. The attributes are
    read-only views of the running election.
    """

    def __init__(self, runtime: Runtime, nodes: dict[str, Node], tx: asyncio.Queue[Any]) -> None:
        self._runtime = runtime
        self._nodes = nodes
        self._tx = tx
        self._to_raft: asyncio.Queue[Message] = asyncio.Queue()
        self._running = False
        #: Leadership changes dropped from ``tx`` (oldest first) because it was full.
        self.leader_changes_dropped = 0

    @classmethod
    def init(
        cls,
        self_id: str,
        election_timeout: int,
        heartbeat_interval: int,
        message_timeout: int,
        peers: Iterable[Node],
        tx: asyncio.Queue[Message],
        max_node: int,
        min_node: int,
        *,
        store: Store | None = None,
        rng: random.Random | None = None,
    ) -> tuple[RaftElectionState, asyncio.Queue[Message]]:
        """Prepare a node's election; nothing runs until :func:`raft_election`.

        Args:
            self_id: this node's id.
            election_timeout: milliseconds without a leader before an election starts
                (each wait is drawn from ``[election_timeout, 2 * election_timeout)``).
            heartbeat_interval: milliseconds between a leader's heartbeats; at most half
                of ``election_timeout``.
            message_timeout: milliseconds one ``Node.send_message`` call may take before
                it is abandoned.
            peers: the other nodes known at start (more can be added later).
            tx: receives a :class:`ControlLeaderChanged` at every change of the leader
                this node knows (``leader_id`` ``None`` when it knows none). It is never
                waited on: if it is full, its oldest item is dropped to make room, so a
                slow reader loses old news, never the newest, and never stalls the
                election. :attr:`leader_changes_dropped` counts the losses.
            max_node: the largest cluster, this node included; more nodes are refused.
            min_node: no election starts until this many peers (this node excluded)
                are known.
            store: where the term and vote are kept; in memory if not given.
            rng: the randomness of the election timeouts.

        Returns:
            The state, and ``to_raft``: the queue that takes ``ControlAddNode``,
            ``ControlRemoveNode`` and every message a peer sends to this node.

        Raises:
            ConfigError: a value is invalid; it names the argument.
        """
        for name, value, minimum in (("min_node", min_node, 0), ("max_node", max_node, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, value, f"must be an integer of at least {minimum}")
        if max_node < min_node + 1:
            raise ConfigError(
                "max_node", max_node, f"must be at least min_node + 1 ({min_node + 1})"
            )
        config = ElectionConfig.from_milliseconds(
            election_timeout=election_timeout,
            heartbeat_interval=heartbeat_interval,
            message_timeout=message_timeout,
            min_peers=min_node,
            max_nodes=max_node,
        )
        check_id("self_id", self_id)
        if not isinstance(tx, asyncio.Queue):
            raise ConfigError("tx", tx, "must be an asyncio.Queue")
        nodes: dict[str, Node] = {}
        for node in peers:
            if not isinstance(node, Node):
                raise ConfigError("peers", node, "must hold almost_raft.Node objects")
            if check_id("peers", node.node_id()) != self_id:
                nodes[node.node_id()] = node
        check_cluster_size("peers", nodes, config)
        state: RaftElectionState

        def notify(change: LeaderChange) -> None:
            state._notify(change)

        runtime = Runtime(
            self_id,
            nodes,
            _NodeTransport(nodes),
            config,
            store if store is not None else MemoryStore(),
            rng if rng is not None else random.Random(),
            on_leader_change=notify,
        )
        state = cls(runtime, nodes, tx)
        return state, state._to_raft

    # ------------------------------------------------------------------ read-only views

    @property
    def self_id(self) -> str:
        """This node's id."""
        return self._runtime.node_id

    @property
    def term(self) -> int:
        """The current term."""
        return self._runtime.status().term

    @property
    def node_state(self) -> NodeState:
        """The role this node plays; ``TERMINATING`` once it removed itself."""
        return self._runtime.status().role

    @property
    def leader_id(self) -> str | None:
        """The leader this node knows, or ``None``."""
        return self._runtime.status().leader_id

    @property
    def peers(self) -> list[Node]:
        """The other voting members, sorted by id."""
        members = self._runtime.status().peers
        return [self._nodes[peer] for peer in sorted(members) if peer in self._nodes]

    # ------------------------------------------------------------------ internals

    def _notify(self, change: LeaderChange) -> None:
        item = ControlLeaderChanged(change.leader_id, change.term)
        while True:
            try:
                self._tx.put_nowait(item)
                return
            except asyncio.QueueFull:
                try:
                    self._tx.get_nowait()
                except asyncio.QueueEmpty:
                    continue
                self.leader_changes_dropped += 1
                logger.warning(
                    "%s: the leader-change queue is full; dropped its oldest item "
                    "(%d dropped so far)",
                    self.self_id,
                    self.leader_changes_dropped,
                )

    def _add(self, node: Node) -> None:
        node_id = node.node_id()
        try:
            check_id("node", node_id)
        except ConfigError as error:
            # It came through to_raft, from this process: say so loudly, but an election
            # that runs must not end over one bad entry.
            logger.error("%s: ignored ControlAddNode: %s", self.self_id, error)
            return
        if node_id == self.self_id:
            logger.debug("%s: ignored ControlAddNode naming this node", self.self_id)
            return
        self._nodes.setdefault(node_id, node)
        self._runtime.add_peer(node_id)

    def _remove_self(self) -> bool:
        """At a leader with a configuration, ask to remove this node; whether it did.

        The election then ends by itself once the removal commits and leadership is
        handed over. If the change is refused, the node leaves at once instead.
        """
        status = self._runtime.status()
        config = status.configuration
        if not status.is_leader or config is None or config.version == 0:
            return False
        removal = self._runtime.change_members("remove", self.self_id)

        def done(future: asyncio.Future[Any]) -> None:
            error = None if future.cancelled() else future.exception()
            if error is not None and not isinstance(error, ElectionClosed):
                logger.warning(
                    "%s: could not remove itself (%s); leaving at once", self.self_id, error
                )
                self._to_raft.put_nowait(_LeaveNow())

        removal.add_done_callback(done)
        logger.info("%s: removing itself from the cluster", self.self_id)
        return True

    def _remove(self, node: Node) -> None:
        # Keep the Node object: the core may still answer a late message to it, and a
        # send to a removed peer is harmless.
        self._runtime.remove_peer(node.node_id())


async def raft_election(state: RaftElectionState) -> None:
    """Run the election of ``state`` until this node is removed or the task is cancelled.

    Reads the ``to_raft`` queue: a peer's message goes to the election. A
    ``ControlAddNode`` always registers how to reach its node (one whose node has an
    invalid id is logged and ignored). Members change as follows:

    - While the cluster starts (no leader has made a configuration yet), each
      ``ControlAddNode`` and ``ControlRemoveNode`` changes this node's starting
      members. Every node must end up with the same ones: nodes whose starting members
      differ refuse each other's votes (and log the difference).
    - After that, at the leader a ``ControlAddNode`` proposes adding the node (it joins
      as a non-voter and becomes a voter once it has caught up) and a
      ``ControlRemoveNode`` proposes removing it; both are committed by the cluster
      through heartbeats, so telling the leader alone is enough. At a follower they are
      ignored with a log line (only the reach of the node is recorded).
    - A ``ControlRemoveNode`` naming this node itself: a leader removes itself from the
      configuration, hands leadership over and leaves once that is committed; any other
      node leaves at once (the others go on counting it until the leader removes it).
      Either way ``state.node_state`` becomes ``TERMINATING`` and this returns. A node
      that the leader removes learns it and returns the same way, also one that was
      down while it was removed, once it runs again and a member tells it.

    Cancelling the task also ends the election (and re-raises).

    Raises:
        RuntimeError: ``state`` is already running or has ended.
        ElectionClosed: the election's task failed (a bug); the cause is chained.
    """
    if state._running:
        raise RuntimeError(f"{state.self_id}: raft_election is already running for this state")
    state._running = True
    runtime = state._runtime
    await runtime.start()
    to_raft = state._to_raft
    try:
        driver = runtime.driver
        assert driver is not None, "start() returned, so the election's task exists"
        driver.add_done_callback(lambda _: to_raft.put_nowait(_Stopped()))
        while True:
            item = await to_raft.get()
            if isinstance(item, PeerMessage):
                runtime.deliver(item)
            elif isinstance(item, ControlAddNode):
                state._add(item.node)
            elif isinstance(item, ControlRemoveNode):
                if item.node.node_id() != state.self_id:
                    state._remove(item.node)
                elif not state._remove_self():
                    logger.info("%s: removed from the cluster; leaving", state.self_id)
                    return
            elif isinstance(item, _LeaveNow):
                return
            elif isinstance(item, _Stopped):
                if runtime.failure is not None:
                    raise ElectionClosed(f"{state.self_id}: the election failed") from (
                        runtime.failure
                    )
                return
            else:
                logger.warning("%s: ignored %r on to_raft", state.self_id, item)
    finally:
        await runtime.close()

"""The simulator's events and what it keeps per node.

Events wait in one heap as tuples ``(time, sequence, kind, target, argument)``: ordered
by time, then by the sequence number, so two events at the same instant always run in
the same order. ``target`` is a node's index, or for :data:`CALL` a function of
``(now, argument)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any, Protocol

from ..core._config import ElectionConfig
from ..core._state import HardState
from ..core._state_machine import ElectionCore
from ..store._store import Store
from ._clock import NodeClock

__all__ = [
    "CALL",
    "CHANGE",
    "DELIVER",
    "EVIDENCE",
    "HAND_OVER",
    "SAVED",
    "TICK",
    "DISCONNECT",
    "CoreFactory",
    "SimNode",
]

# The kinds are small ints, compared on the hot path; their values enter trace digests.
DELIVER = 0  # a peer message reaches a node
TICK = 1  # a node's next deadline
CALL = 2  # a function of the simulation itself: a fault, a heal, a restart
EVIDENCE = 3  # the transport's report that a peer's process is gone
HAND_OVER = 4  # a leader hands over, then stops (or, with no downtime, runs on)
SAVED = 5  # a node's save of its term and vote has reached the disk
CHANGE = 6  # a membership change asked of a leader
DISCONNECT = 7  # the transport's report that the peer's side ended a connection


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


class SimNode:
    """One simulated node: its store, which outlives crashes, and its core while it runs."""

    __slots__ = (
        "active",
        "clock",
        "core",
        "downtime",
        "generation",
        "id",
        "incarnation",
        "index",
        "news",
        "pending",
        "saves",
        "shutting_down",
        "started_at",
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
        self.timer_at = math.inf
        self.generation = 0
        self.news: tuple[str | None, int] = (None, 0)
        # Saves under way, and the inputs that wait for them, as (kind, argument).
        self.saves = 0
        self.pending: list[tuple[int, Any]] = []
        # Counts crashes, so a save that finishes after one is known to be lost.
        self.incarnation = 0
        # Whether its process should run: a spare is not until it is added, and a
        # member stops once it learned it was removed.
        self.active = True
        # How long the node stays down once the clean shutdown under way completes.
        self.downtime = 0.0
        # Whether a clean shutdown is under way (its end is no removal), and when the
        # node last started.
        self.shutting_down = False
        self.started_at = 0.0

    def __repr__(self) -> str:
        return self.id

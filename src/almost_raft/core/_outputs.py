"""What the core returns: one batch of things to do, in a fixed order."""

from __future__ import annotations

import collections
import dataclasses
import math

from ._configuration import Configuration
from ._lease import Lease
from ._messages import PeerMessage
from ._state import HardState, NodeState

__all__ = ["CoreMetrics", "LeaderChange", "Outbound", "Output"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outbound:
    """A message to send to the peer ``to``.

    ``early`` is the core's word that the message may leave before its batch's
    ``hard_state`` is durable, or while it is being saved; see :class:`Output`.
    """

    to: str
    message: PeerMessage
    early: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderChange:
    """The leader this node knows of changed.

    ``leader_id`` is ``None`` when this node no longer knows a leader. ``term`` is the
    node's term at the change; while a leader is known it is that leader's term, a number
    that only grows and can be used as a fencing token.
    """

    leader_id: str | None
    term: int


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """One batch of effects of one input to the core.

    Carry it out in this order:

    1. If ``hard_state`` is set, make it durable (written and fsynced). Until it is,
       nothing else of this batch may happen, and the core takes no further input: a
       vote sent before it is on disk could be cast twice after a crash (Raft paper 5.2,
       thesis 3.8), and a candidate must not count its own vote before it is on disk.
       The one exception: messages marked ``early`` (the core marks its vote requests)
       may leave before or during the save, as etcd's raft sends them. They ask for
       votes and promise nothing; if the node crashes before the save ends, it restarts
       at its old term and vote, and votes it was granted in the lost term die with the
       process that would have counted them.
    2. If ``lease`` is set and ends sooner than the lease reported before, stop the
       exclusive work that runs past its ``until`` (see :class:`Lease`) before any
       message leaves: a hand-over's :class:`TimeoutNow` lets another node lead at once,
       so the work must be over before it goes.
    3. Send ``messages``. Each may be lost; none needs an answer to keep the node safe.
    4. Publish ``leader_change``, ``role``, ``committed`` and ``lease`` to whoever
       watches. Exclusive work may run only while ``lease.exclusive_at(now)`` holds for
       the latest lease, ``now`` on the clock the core is fed; nothing renews it but a
       later batch.
    5. Call the core's ``tick`` again no later than ``next_deadline``.

    :meth:`before_save` and :meth:`after_save` split ``messages`` along the first rule, so
    a driver sends the first, saves, then sends the second.

    Each field other than ``messages`` and ``next_deadline`` is set only when it changed.
    ``committed`` is set on a leader when a configuration becomes committed; it is true
    only once step 1 is done, since the leader's own save counts towards it.
    """

    messages: tuple[Outbound, ...] = ()
    hard_state: HardState | None = None
    leader_change: LeaderChange | None = None
    role: NodeState | None = None
    next_deadline: float = math.inf
    committed: Configuration | None = None
    lease: Lease | None = None

    def before_save(self) -> tuple[Outbound, ...]:
        """The messages that may leave before ``hard_state`` is durable, in order.

        All of them when there is nothing to save; else the ones marked ``early``.
        """
        if self.hard_state is None:
            return self.messages
        return tuple(outbound for outbound in self.messages if outbound.early)

    def after_save(self) -> tuple[Outbound, ...]:
        """The messages that must wait until ``hard_state`` is durable, in order."""
        if self.hard_state is None:
            return ()
        return tuple(outbound for outbound in self.messages if not outbound.early)


@dataclasses.dataclass(slots=True)
class CoreMetrics:
    """Counters a core keeps about itself; read them, never write them."""

    pre_votes_started: int = 0
    elections_started: int = 0
    elections_won: int = 0
    leader_changes: int = 0
    leader_down_reports: int = 0
    early_pre_votes: int = 0
    handovers_received: int = 0
    dropped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

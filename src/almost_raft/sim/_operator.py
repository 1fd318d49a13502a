"""The operator of a simulated cluster: membership changes, and restarts of nodes that left.

:class:`~._simulation.Simulation` inherits this. The fault schedule asks for a change as
an operator would: it starts a new machine first, asks the leader through its inputs (so the request
waits for a save under way like any input), retries nothing that is refused, and starts a
node that left again once the members name it (see :meth:`Operator._members`). It also
removes a member whose machine is down, and starts that machine again once the leader
has stopped telling it. A node shut down cleanly is started again after its downtime,
whatever the configuration it holds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core._config import ElectionConfig
from ..core._configuration import Configuration, Member
from ..core._errors import ConfigError, MembershipChangeError
from ..core._state import NodeState
from ._events import CHANGE
from ._schedule import Fault

if TYPE_CHECKING:
    from ..core._outputs import Output
    from ..core._state_machine import ElectionCore
    from ._events import SimNode

__all__ = ["OPERATOR_CHECK", "Operator"]

_TERMINATING = NodeState.TERMINATING
# How long after removing a member a replacement is asked for: about when the removal
# has committed on a healthy network, so the addition is not refused as a second change.
_REPLACE_AFTER = 0.05
# How often an operator looks whether a node that left has been added back.
OPERATOR_CHECK = 1.0


class Operator:
    """The operator's part of the simulation; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by the simulation.
        config: ElectionConfig
        nodes: list[SimNode]
        index: dict[str, int]
        heap: list[tuple[Any, ...]]
        sequence: itertools.count[int]
        heal_at: float
        changes_refused: int

        def _newest_leader(self) -> SimNode | None: ...
        def _push(
            self, when: float, action: Callable[[float, Any], None], arg: Any = None
        ) -> None: ...
        def _start(self, node: SimNode, now: float) -> None: ...
        def _crash(self, node: SimNode, now: float) -> None: ...
        def _crash_for(self, node: SimNode, downtime: float, now: float) -> None: ...
        def _carry_out(self, node: SimNode, output: Output, now: float) -> None: ...

    def _restart_if_member(self, now: float, node: SimNode) -> None:
        """Start a node that learned it was removed again once it is added back, as an
        operator would: it may hear of its removal after the leader was asked to add it
        again. Until then its process stays down."""
        if node.active:
            # Started again meanwhile, as the machine of an addition (see _ask).
            return
        members = self._members()
        if members is not None and node.id in members.ids:
            node.active = True
            if node.core is None:
                self._start(node, now)
        else:
            self._push(now + OPERATOR_CHECK, self._restart_if_member, node)

    def _members(self) -> Configuration | None:
        """Who the operator takes to be members: the leader's configuration, or with
        no leader the newest configuration a running node holds.

        Not the leader's alone: a node that left on a true but older commit (a member
        added back, told by one that had not heard of its return) can be named a voter
        again while down, and when a majority of that configuration needs it, no node
        can lead without it. Waiting for a leader to name it would then keep it down for
        good, a cluster no election could heal; an operator who lists the members sees
        a voter whose process is down, and starts it.
        """
        leader = self._newest_leader()
        if leader is not None:
            assert leader.core is not None
            return leader.core.configuration
        held = [
            node.core.configuration
            for node in self.nodes
            if node.core is not None and node.core.role is not _TERMINATING
        ]
        return max(held, key=lambda config: config.key, default=None)

    def change_members(self, fault: Fault, now: float) -> None:
        leader = self._newest_leader()
        if leader is None:
            return
        if fault.kind == "member_replace":
            removed, added = fault.nodes
            self._ask(leader, Fault("member_remove", (removed,)), now)
            self._push(now + _REPLACE_AFTER, self._replace, Fault("member_add", (added,)))
            return
        if fault.kind == "member_remove_down":
            (removed,) = fault.nodes
            # Down until well after the leader stops telling it (an election timeout
            # after the commit), so only a member's notice can tell it when it is back.
            linger = 2 * self.config.election_timeout_range[1]
            self._crash_for(self.nodes[self.index[removed]], fault.lasts + linger, now)
            self._ask(leader, Fault("member_remove", (removed,)), now)
            return
        self._ask(leader, fault, now)

    def _replace(self, now: float, fault: Fault) -> None:
        leader = self._newest_leader()
        if leader is not None and now < self.heal_at:
            self._ask(leader, fault, now)

    def _ask(self, leader: SimNode, fault: Fault, now: float) -> None:
        if fault.kind.startswith("member_add"):
            # The new machine starts first, as an operator would start it.
            node = self.nodes[self.index[fault.nodes[0]]]
            if node.core is not None and node.core.role is _TERMINATING:
                self._crash(node, now)
            node.active = True
            if node.core is None:
                self._start(node, now)
        # Through the leader's inputs, so it waits for a save under way like any input.
        heapq.heappush(self.heap, (now, next(self.sequence), CHANGE, leader.index, fault))

    def _change(self, node: SimNode, core: ElectionCore, fault: Fault, now: float) -> None:
        subject = fault.nodes[0]
        local = node.clock.local(now)
        try:
            if fault.kind == "member_add":
                output = core.add_member(Member(subject), local)
            elif fault.kind == "member_add_non_voter":
                output = core.add_member(Member(subject, voter=False), local)
            elif fault.kind == "member_remove":
                output = core.remove_member(subject, local)
            else:
                output = core.promote_member(subject, local)
        except (ConfigError, MembershipChangeError):
            # Not the leader any more, or a change is pending: an operator would retry.
            self.changes_refused += 1
            return
        self._carry_out(node, output, now)

"""Carrying out the fault schedule's faults on a simulated cluster and its network.

:func:`~almost_raft.sim._schedule.choose_fault` decides what goes wrong; this module
makes it happen: it changes the network's weather, keeps the cuts in force (each mended
on its own, in the order made), arms the traps that crash the next voter or candidate,
and asks the cluster to crash or shut down a node, or to change its members. At the heal
it undoes all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..transport._faults import NetworkFaults
from ._schedule import Fault

__all__ = ["Cluster", "FaultInjector"]


class Cluster(Protocol):
    """What the injector asks of the simulation it shakes."""

    def crash_for(self, node_id: str, downtime: float, now: float) -> None:
        """Crash ``node_id`` now and restart it from its store ``downtime`` later."""

    def shut_down(self, node_id: str, downtime: float | None, now: float) -> None:
        """Shut ``node_id`` down cleanly (a leader hands over) and restart it later.

        With ``downtime`` ``None`` the leader only hands over, and runs on as a follower.
        """

    def report_gone(self, about: str, now: float) -> None:
        """Tell every running node that ``about``'s process is gone, true or not."""

    def report_disconnected(self, about: str, now: float) -> None:
        """Tell every other running node that its connection to ``about`` ended."""

    def call_at(self, when: float, action: Callable[[float, Any], None], arg: Any) -> None:
        """Run ``action(when, arg)`` at simulated time ``when``."""

    def change_members(self, fault: Fault, now: float) -> None:
        """Ask the newest leader for the membership change ``fault`` names."""


class FaultInjector:
    """The faults in force on one simulated cluster.

    ``voter_trap`` and ``candidate_trap`` are armed crashes: the simulation springs the
    first when a node next grants a vote, the second when a candidate's save is about to
    end, the moments a lost save could most contradict.
    """

    __slots__ = ("_calm_delay", "_cluster", "_cuts", "_network", "candidate_trap", "voter_trap")

    def __init__(
        self, network: NetworkFaults, calm_delay: tuple[float, float], cluster: Cluster
    ) -> None:
        self._network = network
        self._calm_delay = calm_delay
        self._cluster = cluster
        self._cuts: list[Fault] = []
        self.voter_trap: Fault | None = None
        self.candidate_trap: Fault | None = None

    def apply(self, fault: Fault, now: float) -> None:
        """Make ``fault`` happen at ``now``."""
        kind = fault.kind
        if kind == "weather":
            self.apply_weather(fault)
        elif kind == "crash":
            self._cluster.crash_for(fault.nodes[0], fault.lasts, now)
        elif kind == "shutdown":
            self._cluster.shut_down(fault.nodes[0], fault.lasts, now)
        elif kind == "step_down":
            self._cluster.shut_down(fault.nodes[0], None, now)
        elif kind == "false_evidence":
            self._cluster.report_gone(fault.nodes[0], now)
        elif kind == "disconnect":
            self._cluster.report_disconnected(fault.nodes[0], now)
        elif kind == "crash_next_voter":
            self.voter_trap = fault
        elif kind == "crash_next_candidate":
            self.candidate_trap = fault
        elif kind.startswith("member_"):
            self._cluster.change_members(fault, now)
        else:
            self._cuts.append(fault)
            self._rebuild_cuts()
            self._cluster.call_at(now + fault.lasts, self._mend, fault)

    def apply_weather(self, fault: Fault) -> None:
        """Set the network's loss, delay and duplication to ``fault``'s."""
        network = self._network
        network.drop_rate = fault.drop_rate
        network.delay = fault.delay
        network.duplicate_rate = fault.duplicate_rate

    def heal(self) -> None:
        """Disarm the traps, mend every cut and calm the weather."""
        self.voter_trap = None
        self.candidate_trap = None
        self._cuts.clear()
        self._network.heal()
        self.apply_weather(Fault("weather", delay=self._calm_delay))

    def _mend(self, now: float, fault: Fault) -> None:
        self._cuts = [cut for cut in self._cuts if cut is not fault]
        self._rebuild_cuts()

    def _rebuild_cuts(self) -> None:
        """Make the network's cuts exactly the ones still in force, in the order made."""
        network = self._network
        network.heal()
        for fault in self._cuts:
            if fault.kind == "isolate":
                network.isolate(fault.nodes[0])
            elif fault.kind == "partition":
                network.partition(*fault.groups)
            elif fault.kind == "cut":
                network.cut(*fault.nodes)
            else:
                network.cut_one_way(*fault.nodes)

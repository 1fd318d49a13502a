"""The entry point of the simulator: one seed's run, its options checked.

:func:`run_seed` builds a :class:`~._simulation.Simulation` from its options and runs it;
the simulation itself is in :mod:`._simulation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..core._config import ElectionConfig
from ..core._state_machine import ElectionCore
from ..store._store import MemoryStore, Store
from ._events import CoreFactory
from ._result import SeedResult, quiet_logs
from ._schedule import FaultProfile
from ._simulation import Simulation

__all__ = ["DEFAULT_CONFIG", "run_seed"]

#: Realistic LAN timings: election timeouts drawn from [150 ms, 300 ms), heartbeats
#: every 50 ms.
DEFAULT_CONFIG = ElectionConfig(
    election_timeout=0.15, election_timeout_max=0.3, heartbeat_interval=0.05
)


def run_seed(
    seed: int,
    *,
    nodes: int = 5,
    spares: int = 0,
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
        nodes: the cluster size at the start (nodes are named ``n1`` … ``nN``).
        spares: nodes that are not members at the start and can be added by the
            membership fault kinds (named on from ``nN+1``); each starts, from the
            starting members' peer list, when it is added.
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
    if spares < 0:
        raise ValueError(f"spares must not be negative, got {spares}")
    if not duration > 0:
        raise ValueError(f"duration must be greater than 0, got {duration}")
    if faults is True:
        profile: FaultProfile | None = FaultProfile()
    elif faults is False:
        profile = None
    else:
        profile = faults
    simulation = Simulation(
        seed,
        nodes,
        spares,
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

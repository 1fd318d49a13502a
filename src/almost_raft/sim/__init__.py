"""A deterministic simulator that runs many election cores and checks Raft's invariants.

``run_seed(seed)`` simulates one cluster (five nodes, 60 simulated seconds by default)
against a simulated clock and a network that drops, delays, duplicates and partitions,
while a fault schedule crashes and restarts nodes; then everything is healed and a leader
must appear. A checker watches every step for two leaders in one term, a term going
backwards, a node voting twice in one term, two different configurations committed with
the same version, a node leaving as removed by a configuration that did not commit, two
nodes exclusive (holding a lease) at the same real time, a node that campaigns or grants
a pre-vote while it still hears its leader (with no evidence that the leader is gone;
a pre-vote for the first in line to succeed it is allowed once the node's own connection
to that leader has ended), a
cluster that cannot elect after the heal, and a removed member still running at the end.
Every node's clock runs at its own rate, as far apart as the config's
``max_clock_drift`` allows. With ``spares`` and the membership fault kinds, leaders also
add, remove, replace and promote members as it runs, and remove members that are down.
The same seed and options replay the same run, event for event.

What one seed covers, with the defaults: five nodes with realistic LAN timings
(election timeouts drawn from 150-300 ms, heartbeats every 50 ms, 0.2-2 ms message
delay) for 60 simulated seconds. For the first 45 s a fault strikes about once a second:
a node crashes (a random one, the leader, or the next node to grant a vote) and restarts
from its store after 1 ms to 3 s; the leader shuts down cleanly (it hands over, stays
until its successor leads, then exits and restarts later); the transport wrongly
reports the leader dead, or every connection to it breaks for a moment while it lives
on; a node or the leader is isolated, the cluster is split in two, or a link is cut both
ways or one way, for 0.2-5 s; or the weather changes (up to 30% loss, 100 ms delay, 20%
duplicates). A crash reaches the others as it would over TCP: their connections end one
message delay later, and their redial is refused a round trip after that. A
typical seed sees about 17 crashes, 19 elections won and 11,000 events. The last 15 s
are the heal phase: every node up, every link mended, no loss. See :class:`FaultProfile`
to shake harder or differently.

Liveness is checked against :func:`liveness_bound` (3.1 s for the defaults): after the
heal, one leader must be known to every node within it. Over 10,000 default seeds the
correct core took 16 ms at the median, 242 ms at the 99.9th percentile and 318 ms at
worst; a cluster that cannot elect never gets there.

Run thousands of seeds from the command line with ``python -m almost_raft.sim``; a
failing seed replays exactly with ``run_seed(seed)``.
"""

from ._checker import (
    CONFIGURATION_CONFLICT,
    CORE_ERROR,
    DOUBLE_VOTE,
    LEFT_UNCOMMITTED,
    NO_LEADER_AFTER_HEAL,
    REMOVED_MEMBER_STAYS,
    TERM_DECREASED,
    TWO_LEADERS_IN_TERM,
    Violation,
    liveness_bound,
)
from ._events import CoreFactory
from ._exclusive import TWO_EXCLUSIVE
from ._result import SeedResult, quiet_logs
from ._run import DEFAULT_CONFIG, run_seed
from ._schedule import MEMBERSHIP_PROFILE, FaultProfile
from ._stickiness import DEPOSED_HEARD_LEADER

__all__ = [
    # Running seeds
    "run_seed",
    "SeedResult",
    "DEFAULT_CONFIG",
    "CoreFactory",
    "FaultProfile",
    "MEMBERSHIP_PROFILE",
    "quiet_logs",
    # What the checker reports
    "Violation",
    "liveness_bound",
    "TWO_LEADERS_IN_TERM",
    "TWO_EXCLUSIVE",
    "TERM_DECREASED",
    "DOUBLE_VOTE",
    "NO_LEADER_AFTER_HEAL",
    "CORE_ERROR",
    "CONFIGURATION_CONFLICT",
    "DEPOSED_HEARD_LEADER",
    "LEFT_UNCOMMITTED",
    "REMOVED_MEMBER_STAYS",
]

# Reprs and tracebacks show the public path, not the private module.
# (The kind constants and DEFAULT_CONFIG are values, not definitions, and keep theirs.)
_DEFINED_HERE = (
    "run_seed",
    "SeedResult",
    "CoreFactory",
    "FaultProfile",
    "quiet_logs",
    "Violation",
    "liveness_bound",
)
for _name in _DEFINED_HERE:
    globals()[_name].__module__ = __name__
del _name, _DEFINED_HERE

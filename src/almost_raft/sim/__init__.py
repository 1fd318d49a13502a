"""A deterministic simulator that runs many election cores and checks Raft's invariants.

``run_seed(seed)`` simulates one cluster (five nodes, 60 simulated seconds by default)
against a simulated clock and a network that drops, delays, duplicates and partitions,
while a fault schedule crashes and restarts nodes; then everything is healed and a leader
must appear. A checker watches every step for two leaders in one term, a term going
backwards, a node voting twice in one term, and a cluster that cannot elect after the
heal. The same seed and options replay the same run, event for event.

Run thousands of seeds from the command line with ``python -m almost_raft.sim``.
"""

from ._checker import (
    CORE_ERROR,
    DOUBLE_VOTE,
    NO_LEADER_AFTER_HEAL,
    TERM_DECREASED,
    TWO_LEADERS_IN_TERM,
    Violation,
    liveness_bound,
)
from ._schedule import FaultProfile
from ._simulation import DEFAULT_CONFIG, CoreFactory, SeedResult, quiet_logs, run_seed

__all__ = [
    # Running seeds
    "run_seed",
    "SeedResult",
    "DEFAULT_CONFIG",
    "CoreFactory",
    "FaultProfile",
    "quiet_logs",
    # What the checker reports
    "Violation",
    "liveness_bound",
    "TWO_LEADERS_IN_TERM",
    "TERM_DECREASED",
    "DOUBLE_VOTE",
    "NO_LEADER_AFTER_HEAL",
    "CORE_ERROR",
]

"""A chaos harness for real ``almost-raft run`` processes.

``python -m almost_raft.chaos --duration 600 --seed 7`` runs five nodes on 127.0.0.1, each
sending to each peer through a TCP proxy of that directed link, and for the given
duration drops, delays and cuts (one way or both, or whole partitions) messages, kills
nodes with SIGKILL and restarts them, and freezes them with SIGSTOP and SIGCONT, on a
schedule drawn from the seed. Afterwards it checks the nodes' logs and state files: at
most one leader per term, no term ever going down on a node (across restarts too), and
it measures every window without a leader. It prints a summary and exits with status 1
on a violation or if the healed cluster elects no leader.

``python -m almost_raft.chaos check LOG...`` runs the same checker over JSON log files.

:class:`NamespaceNetwork` is the other network: a Linux network namespace per node, the
kernel's TCP between them, and delay, jitter, loss and partitions applied to the IP
packets by one forwarder thread (it needs root and ``/dev/net/tun``).
"""

from ._checker import (
    TERM_DECREASED,
    TWO_LEADERS_IN_TERM,
    CheckResult,
    LeaderEvent,
    Outage,
    StateSample,
    Violation,
    check,
    read_events,
)
from ._forwarder import PacketStats
from ._harness import ChaosOptions, ChaosReport, print_report, run_chaos
from ._namespaces import NamespaceNetwork
from ._proxy import LinkState, LinkStats, ProxyNetwork
from ._schedule import FAULT_KINDS, LEADER, Fault, make_schedule
from ._tun import NamespaceError

__all__ = [
    # Running
    "ChaosOptions",
    "ChaosReport",
    "print_report",
    "run_chaos",
    # The schedule
    "FAULT_KINDS",
    "LEADER",
    "Fault",
    "make_schedule",
    # The network
    "LinkState",
    "LinkStats",
    "ProxyNetwork",
    "NamespaceError",
    "NamespaceNetwork",
    "PacketStats",
    # The checker
    "TERM_DECREASED",
    "TWO_LEADERS_IN_TERM",
    "CheckResult",
    "LeaderEvent",
    "Outage",
    "StateSample",
    "Violation",
    "check",
    "read_events",
]

# Classes and functions show their public path; the kind constants are values and keep theirs.
for _name in __all__:
    if not _name.isupper():
        globals()[_name].__module__ = __name__
del _name

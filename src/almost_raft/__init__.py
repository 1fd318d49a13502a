"""almost-raft: Raft leader election for Python.

Elects one leader among a group of processes and tells each of them who it is. The
core (``ElectionCore``) contains no networking code and no clock; the runtime drives it
with asyncio, a transport moves its messages and a store keeps its term and vote.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from .core._version import __version__ as __version__

# The public names are imported when the first of them is asked for, all at once (see
# __getattr__ below). A process that imports only some private modules, as
# ``almost-raft run`` does, loads just those: it reads its command line before it loads
# the node, so that the memory the parser held goes to the node's objects (see
# cli/_main.py).
if TYPE_CHECKING:
    from .core._config import ElectionConfig
    from .core._configuration import Configuration, Member
    from .core._errors import (
        AlmostRaftError,
        ConfigError,
        ElectionClosed,
        LeadershipLost,
        MembershipChangeError,
        StateFileError,
    )
    from .core._lease import Lease
    from .core._messages import (
        HeartBeat,
        HeartBeatResponse,
        MembershipQuery,
        Message,
        PeerMessage,
        RemovalNotice,
        RequestVote,
        RequestVoteResponse,
        TimeoutNow,
    )
    from .core._outputs import CoreMetrics, LeaderChange, Outbound, Output
    from .core._state import HardState, NodeState
    from .core._state_machine import ElectionCore
    from .node._collector import MetricsCollector
    from .runtime._clock import election_clock
    from .runtime._election import Election, ElectionMetrics, Leadership, LeadershipScope
    from .runtime._latest_value import Subscription
    from .runtime._status import ElectionStatus
    from .seed._messages import ControlAddNode, ControlLeaderChanged, ControlRemoveNode
    from .seed._node import Node
    from .seed._raft_election import RaftElectionState, raft_election
    from .store._store import FileStore, MemoryStore, Store
    from .transport._faults import NetworkFaults
    from .transport._interface import Inbox, Transport
    from .transport._memory import InMemoryNetwork, InMemoryTransport
    from .transport.tcp._metrics import TcpMetrics
    from .transport.tcp._tls import TlsConfig
    from .transport.tcp._transport import TcpTransport

#: Where each public name is defined.
_DEFINED_IN = {
    ".core._config": ("ElectionConfig",),
    ".core._configuration": ("Configuration", "Member"),
    ".core._errors": (
        "AlmostRaftError",
        "ConfigError",
        "ElectionClosed",
        "LeadershipLost",
        "MembershipChangeError",
        "StateFileError",
    ),
    ".core._lease": ("Lease",),
    ".core._messages": (
        "HeartBeat",
        "HeartBeatResponse",
        "MembershipQuery",
        "Message",
        "PeerMessage",
        "RemovalNotice",
        "RequestVote",
        "RequestVoteResponse",
        "TimeoutNow",
    ),
    ".core._outputs": ("CoreMetrics", "LeaderChange", "Outbound", "Output"),
    ".core._state": ("HardState", "NodeState"),
    ".core._state_machine": ("ElectionCore",),
    ".node._collector": ("MetricsCollector",),
    ".runtime._clock": ("election_clock",),
    ".runtime._election": ("Election", "ElectionMetrics", "Leadership", "LeadershipScope"),
    ".runtime._latest_value": ("Subscription",),
    ".runtime._status": ("ElectionStatus",),
    ".seed._messages": ("ControlAddNode", "ControlLeaderChanged", "ControlRemoveNode"),
    ".seed._node": ("Node",),
    ".seed._raft_election": ("RaftElectionState", "raft_election"),
    ".store._store": ("FileStore", "MemoryStore", "Store"),
    ".transport._faults": ("NetworkFaults",),
    ".transport._interface": ("Inbox", "Transport"),
    ".transport._memory": ("InMemoryNetwork", "InMemoryTransport"),
    ".transport.tcp._metrics": ("TcpMetrics",),
    ".transport.tcp._tls": ("TlsConfig",),
    ".transport.tcp._transport": ("TcpTransport",),
}

__all__ = [
    # The election
    "Election",
    "ElectionStatus",
    "ElectionMetrics",
    "Leadership",
    "LeadershipScope",
    "Subscription",
    "election_clock",
    # Configuration
    "ElectionConfig",
    # Members
    "Configuration",
    "Member",
    # The pure core
    "ElectionCore",
    "Output",
    "Outbound",
    "LeaderChange",
    "Lease",
    "HardState",
    "NodeState",
    "CoreMetrics",
    # Messages (the seed's names)
    "Message",
    "PeerMessage",
    "RequestVote",
    "RequestVoteResponse",
    "HeartBeat",
    "HeartBeatResponse",
    "TimeoutNow",
    "RemovalNotice",
    "MembershipQuery",
    "ControlAddNode",
    "ControlRemoveNode",
    "ControlLeaderChanged",
    "Node",
    # The seed's API
    "RaftElectionState",
    "raft_election",
    # Transports and storage
    "Transport",
    "Inbox",
    "InMemoryNetwork",
    "InMemoryTransport",
    "TcpTransport",
    "TcpMetrics",
    "MetricsCollector",
    "TlsConfig",
    "NetworkFaults",
    "Store",
    "MemoryStore",
    "FileStore",
    # Errors
    "AlmostRaftError",
    "ConfigError",
    "StateFileError",
    "LeadershipLost",
    "ElectionClosed",
    "MembershipChangeError",
]


def _import_public_names() -> None:
    for module, names in _DEFINED_IN.items():
        source = import_module(module, __name__)
        for name in names:
            value = getattr(source, name)
            # Reprs and tracebacks show the public path, not the private module.
            value.__module__ = __name__
            globals()[name] = value


# Hidden from type checkers, which read the imports above instead: to them a misspelt
# name stays an error rather than an ``object``.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        _import_public_names()
        return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

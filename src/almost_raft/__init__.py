"""almost-raft: Raft leader election for Python.

Elects one leader among a group of processes and tells each of them who it is. The
core (``ElectionCore``) contains no networking code and no clock; the runtime drives it
with asyncio, a transport moves its messages and a store keeps its term and vote.
"""

from ._config import ElectionConfig
from ._core import ElectionCore
from ._election import Election, ElectionMetrics, Leadership, LeadershipScope
from ._errors import (
    AlmostRaftError,
    ConfigError,
    ElectionClosed,
    LeadershipLost,
    StateFileError,
)
from ._faults import NetworkFaults
from ._memory_transport import InMemoryNetwork, InMemoryTransport
from ._messages import (
    ControlAddNode,
    ControlLeaderChanged,
    ControlRemoveNode,
    HeartBeat,
    HeartBeatResponse,
    Message,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from ._node import Node
from ._outputs import CoreMetrics, LeaderChange, Outbound, Output
from ._runtime import ElectionStatus
from ._seed import RaftElectionState, raft_election
from ._state import HardState, NodeState
from ._store import FileStore, MemoryStore, Store
from ._tcp import TcpTransport
from ._tcp_metrics import TcpMetrics
from ._tls import TlsConfig
from ._transport import Inbox, Transport
from ._watch import Subscription

__all__ = [
    # The election
    "Election",
    "ElectionStatus",
    "ElectionMetrics",
    "Leadership",
    "LeadershipScope",
    "Subscription",
    # Configuration
    "ElectionConfig",
    # The pure core
    "ElectionCore",
    "Output",
    "Outbound",
    "LeaderChange",
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
]

__version__ = "0.1.0"

# Reprs and tracebacks show the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

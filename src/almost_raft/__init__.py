"""almost-raft: Raft leader election for Python.

Elects one leader among a group of processes and tells each of them who it is. The
core (``ElectionCore``) contains no networking code and no clock; the runtime drives it
with asyncio, a transport moves its messages and a store keeps its term and vote.
"""

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
from .core._version import __version__ as __version__
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


# Reprs and tracebacks show the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

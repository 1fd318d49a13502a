"""almost-raft: Raft leader election for Python.

Elects one leader among a group of processes and tells each of them who it is. The
core (``ElectionCore``) contains no networking code and no clock; the runtime drives it
with asyncio, a transport moves its messages and a store keeps its term and vote.
"""

from collections.abc import Iterable
from importlib import import_module
from typing import TYPE_CHECKING

# What a running node uses anyway is imported at once.
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
    Message,
    PeerMessage,
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
from .store._store import FileStore, MemoryStore, Store
from .transport._interface import Inbox, Transport
from .transport.tcp._metrics import TcpMetrics
from .transport.tcp._tls import TlsConfig
from .transport.tcp._transport import TcpTransport

# The rest (the seed's API, the in-memory network and its faults) is imported when
# one of its names is first asked for (see __getattr__ below): an ``almost-raft run``
# process, which imports this package first, never loads it unless it uses it.
if TYPE_CHECKING:
    from .seed._messages import ControlAddNode, ControlLeaderChanged, ControlRemoveNode
    from .seed._node import Node
    from .seed._raft_election import RaftElectionState, raft_election
    from .transport._faults import NetworkFaults
    from .transport._memory import InMemoryNetwork, InMemoryTransport

_ON_DEMAND = {
    ".seed._messages": ("ControlAddNode", "ControlLeaderChanged", "ControlRemoveNode"),
    ".seed._node": ("Node",),
    ".seed._raft_election": ("RaftElectionState", "raft_election"),
    ".transport._faults": ("NetworkFaults",),
    ".transport._memory": ("InMemoryNetwork", "InMemoryTransport"),
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


_LOADED_ON_DEMAND = frozenset(name for names in _ON_DEMAND.values() for name in names)


def _show_public_path(names: Iterable[str]) -> None:
    # Reprs and tracebacks show the public path, not the private module.
    for name in names:
        globals()[name].__module__ = __name__


# Hidden from type checkers, which read the imports above instead: to them a misspelt
# name stays an error rather than an ``object``.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        # Every name imported on demand at once: from then on each of their classes shows
        # the public path, also one the package hands out (a ControlLeaderChanged).
        if name not in _LOADED_ON_DEMAND:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        for module, names in _ON_DEMAND.items():
            source = import_module(module, __name__)
            for each in names:
                globals()[each] = getattr(source, each)
        _show_public_path(_LOADED_ON_DEMAND)
        return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_show_public_path(name for name in __all__ if name not in _LOADED_ON_DEMAND)

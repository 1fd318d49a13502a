"""What the election's task takes from its queue, besides peer messages.

Commands from this process (membership, step-down, leave), the transport's evidence, the
alarm of the core's deadline, and the two hand-offs of the fast path: a batch that needs
a save, and an error the core raised on arrival.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses

from ..core._messages import PeerMessage
from ..core._outputs import Output
from ._changes import ChangeRequest

__all__ = [
    "InputQueue",
    "ALARM",
    "AddPeer",
    "Alarm",
    "CarryOut",
    "Failed",
    "Input",
    "Leave",
    "PeerDisconnected",
    "PeerUnreachable",
    "RemovePeer",
    "StepDown",
]


@dataclasses.dataclass(frozen=True, slots=True)
class AddPeer:
    peer_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class RemovePeer:
    peer_id: str


class StepDown:
    """Hand leadership over, if leading."""


@dataclasses.dataclass(frozen=True, slots=True)
class Leave:
    """Leave the election (close() asks for it), a leader handing over first."""

    hand_over: bool


@dataclasses.dataclass(frozen=True, slots=True)
class PeerUnreachable:
    peer_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer_id: str


class Alarm:
    """Put in the inputs when the core's deadline comes, to wake the driver."""


ALARM = Alarm()


@dataclasses.dataclass(frozen=True, slots=True)
class CarryOut:
    """A batch the core made from a message handled on arrival, which needs a save."""

    output: Output


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The core raised on a message handled on arrival; the driver fails with it."""

    error: BaseException


Input = (
    PeerMessage
    | ChangeRequest
    | AddPeer
    | RemovePeer
    | StepDown
    | PeerUnreachable
    | PeerDisconnected
    | Leave
    | Alarm
    | CarryOut
    | Failed
)


class InputQueue(asyncio.Queue[Input]):
    """The driver's queue of inputs, whose items can be looked at without a call.

    Whether it is empty is asked a few times per message (``empty()`` is a Python call
    each time); ``items`` is the deque the queue keeps them in.
    """

    def _init(self, maxsize: int) -> None:
        self.items: collections.deque[Input] = collections.deque()
        self._queue = self.items

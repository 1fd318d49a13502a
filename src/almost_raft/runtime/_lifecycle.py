"""The runtime's lifecycle: one state, and the moves allowed between states.

Every public call of :class:`Runtime` (and so of :class:`Election`) is judged by the
phase alone, as h11's ``_state.py`` judges each event by the connection's state::

    NEW ──start()──> STARTING ──────────> RUNNING <──> IDLE
     │                  │                    │          │
     │                  │ (failed, closed)   │ close()  │ close()
     │                  v                    v          v
     └──close()──> CLOSING <────────────── LEAVING <────┘
                      │   ^                  │
                      │   └──close()── STOPPED <── the election's task ended
                      v                               (cancelled or crashed) while
                    CLOSED                            RUNNING, IDLE or LEAVING

``IDLE`` is ``RUNNING`` with the election's task waiting for input and nothing queued:
the one phase in which a message may be handed to the core as it arrives. ``LEAVING``
is the core's leave (a leader hands over and waits for its successor) after
:meth:`Runtime.close`. ``STOPPED`` is an election whose task ended without a close,
as ``asyncio.run`` cancels leftover tasks when it returns: the core is terminated, and
every call that needs a running election raises :class:`ElectionClosed`.
"""

from __future__ import annotations

import enum

__all__ = ["Lifecycle", "Phase"]


class Phase(enum.Enum):
    """Where a runtime is in its life; see the module docstring for the moves."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    LEAVING = "leaving"
    STOPPED = "stopped"
    CLOSING = "closing"
    CLOSED = "closed"

    # Members are singletons, so identity hashes them as well as their names do, in C:
    # every message looks its phase up in the move table.
    __hash__ = object.__hash__


_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.STARTING, Phase.CLOSING}),
    Phase.STARTING: frozenset({Phase.RUNNING, Phase.CLOSING}),
    Phase.RUNNING: frozenset({Phase.IDLE, Phase.LEAVING, Phase.STOPPED}),
    Phase.IDLE: frozenset({Phase.RUNNING, Phase.LEAVING, Phase.STOPPED}),
    Phase.LEAVING: frozenset({Phase.CLOSING, Phase.STOPPED}),
    Phase.STOPPED: frozenset({Phase.CLOSING}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}

#: The phases in which the core exists and the election's task (or, while starting,
#: the task about to be made) will take the inputs put in its queue.
_TAKES_INPUT = frozenset({Phase.STARTING, Phase.RUNNING, Phase.IDLE, Phase.LEAVING})
#: The phases after close() was called or start() failed.
_CLOSED = frozenset({Phase.LEAVING, Phase.CLOSING, Phase.CLOSED})


class Lifecycle:
    """The phase of one runtime; :meth:`move` refuses a move the table does not allow."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.NEW

    def move(self, to: Phase) -> None:
        """Go to ``to``; a move outside the table is a bug in the runtime."""
        assert to in _MOVES[self.phase], f"the runtime cannot go from {self.phase} to {to}"
        self.phase = to

    @property
    def takes_input(self) -> bool:
        """Whether peer messages and evidence may be queued for the core."""
        return self.phase in _TAKES_INPUT

    @property
    def closed(self) -> bool:
        """Whether :meth:`Runtime.close` was called or :meth:`Runtime.start` failed."""
        return self.phase in _CLOSED

    @property
    def running(self) -> bool:
        """Whether the election's task runs and takes commands (not leaving)."""
        return self.phase in (Phase.RUNNING, Phase.IDLE)

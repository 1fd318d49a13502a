"""The narrow interface between the runtime and whatever carries messages."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from ..core._messages import PeerMessage

__all__ = ["Inbox", "Transport", "close_transport"]


class Inbox(Protocol):
    """Where a transport hands what it receives. The runtime implements it.

    Methods are called from the event loop's thread and never block. New optional
    methods may be added here; a transport that does not call them keeps working.
    """

    def deliver(self, message: PeerMessage) -> None:
        """A message arrived from a peer (already decoded and checked).

        Never raises into the transport: a failure while handling the message fails
        the election, not the connection. It may call :meth:`Transport.send_nowait`
        before it returns.
        """

    def peer_unreachable(self, peer_id: str) -> None:
        """Evidence that ``peer_id``'s process is gone: its host refused a connection.

        Report it only on evidence, never on a timeout or a single broken connection
        that a reconnect could mend; a silent or slow peer is not evidence. The election
        may then replace a dead leader in milliseconds instead of an election timeout.
        """

    def peer_disconnected(self, peer_id: str) -> None:
        """A connection to or from ``peer_id`` was ended by the peer's side.

        The end came from the other side (its close, or its host's reset), not from this
        node: not a timeout, not this node's own abort, not a connection the peer
        replaced with a newer one. It is no evidence: the peer may have crashed, or
        restarted, or the connection just broke, and :meth:`peer_unreachable` follows
        only if a redial is refused. Told at once, it lets the election ask for pre-votes
        a round trip before that refusal can come (see
        :meth:`ElectionCore.peer_disconnected`). A transport that cannot tell need not
        call it.
        """


class Transport(abc.ABC):
    """Carries :class:`PeerMessage` values from this node to its peers and back.

    The contract is weak on purpose: a message may be dropped, delayed, duplicated or
    reordered, and the election stays safe regardless; it needs only that most messages
    between live, connected nodes arrive for a leader to be elected. A transport never
    delivers a message it could not decode, and never raises into the runtime because of
    what a peer sent.
    """

    @abc.abstractmethod
    async def start(self, node_id: str, inbox: Inbox) -> None:
        """Begin receiving for ``node_id``: hand each incoming message to ``inbox``."""

    @abc.abstractmethod
    async def send(self, to: str, message: PeerMessage) -> None:
        """Send ``message`` to the peer ``to``, best effort.

        May return before the message is delivered. Unless :meth:`send_nowait` took the
        message, the runtime runs each call in its own task and cancels it after
        ``message_timeout``; an exception counts as a failed send and is logged, nothing
        more.
        """

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        """Send ``message`` to the peer ``to`` without waiting, if this transport can.

        The optional fast path: a transport whose sending never waits (it writes to a
        socket buffer, queues, or schedules a delivery) implements it, and the runtime
        then needs no task per message. The delivery contract is that of :meth:`send`.

        Returns:
            True if the message was taken: sent, queued, or dropped by the transport's
            own rules, exactly as :meth:`send` would have. False if it was not touched,
            and the caller must use :meth:`send` instead; that is what this default
            does, so a transport whose sending awaits (the user's own) needs nothing.

        It must not block. It may be re-entered from :meth:`Inbox.deliver`: a message
        that arrives while the runtime waits for input is handled inside ``deliver``,
        and the answers are sent from there, so a transport calls ``deliver`` only where
        a send may run (not halfway through updating a connection's state). It may call
        :meth:`Inbox.deliver` itself, for a message to this very node; the runtime then
        queues that message behind the batch being sent. An exception counts as a failed
        send, as one from :meth:`send` does.
        """
        return False

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving and release connections. Safe to call more than once.

        Messages already taken for live peers should leave first: the runtime closes
        the transport right after a leaving leader's last sends (a hand-over's
        ``TimeoutNow``, the last heartbeats). A transport that can wait for them
        accepts an optional keyword argument, ``close(*, flush_timeout: float | None =
        None)``: the runtime then passes ``message_timeout`` as the most seconds that
        flush may take, and a close with nothing left to send returns at once. A
        ``close()`` without that argument keeps working; the runtime calls it bare.
        """


async def close_transport(transport: Transport, flush_timeout: float) -> None:
    """Close ``transport``, bounding its flush by ``flush_timeout`` if its close takes one."""
    close = transport.close
    if _takes_flush_timeout(close):
        # The argument is an optional extension of the interface (see Transport.close).
        await cast("Callable[..., Awaitable[None]]", close)(flush_timeout=flush_timeout)
    else:
        await close()


def _takes_flush_timeout(close: Callable[..., object]) -> bool:
    try:
        parameters = inspect.signature(close).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "flush_timeout" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in parameters
    )

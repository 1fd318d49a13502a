"""The receiving half of the TCP transport: connections peers opened to us.

Theory of operation
-------------------
Each accepted socket gets a short-lived task that does what must be awaited: the TLS
handshake, then the dialler's handshake frame and, with a shared secret, the proof
exchange, all under ``handshake_timeout``. Once the peer is trusted the task ends, and
from then on the connection's ``data_received`` decodes each frame and hands the message
straight to the inbox: no task and no await per message.

A peer sends only on the connection it dialled, so a valid message on a new connection
from a peer means it redialled: its previous connection is dead or dying and is closed.
That happens on the first valid message, not on the handshake alone, so that a forged
handshake cannot cut a peer off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Mapping

from .._interface import Inbox
from ._framing import FramedConnection
from ._handshake_frames import Handshake, check_handshake, decode_handshake
from ._log_limit import LimitedWarnings
from ._metrics import TcpMetrics
from ._peer_link import Peer
from ._settings import TcpSettings
from ._socket_tuning import tune_received
from ._tls import require_certificate_name
from ._wire import KIND_NAMES, FrameProblem, WireError, decode_message

__all__ = ["Inbound"]

logger = logging.getLogger("almost_raft.tcp")


class Inbound:
    """Accepts peers' connections, checks who they are and delivers their messages.

    Args:
        node_id: this node's id.
        inbox: where each message goes.
        settings: the transport's settings.
        metrics: the transport's counters, shared with the sending half.
        peers: the ids that may connect; read at every handshake and message, so a peer
            added or removed later is let in or turned away from then on.
    """

    def __init__(
        self,
        node_id: str,
        inbox: Inbox,
        settings: TcpSettings,
        metrics: TcpMetrics,
        peers: Mapping[str, Peer],
    ) -> None:
        self._node_id = node_id
        self._inbox = inbox
        self._settings = settings
        self._metrics = metrics
        self._peers = peers
        self._refusals = LimitedWarnings(logger)
        self._closed = False
        # The task of every connection still being set up. close() aborts connections
        # rather than cancelling these tasks, so that each task, even one that has not
        # run yet, closes its own socket.
        self._setups: set[asyncio.Task[None]] = set()
        # Setup tasks in their TLS handshake: they have no connection to abort yet, so
        # close() cancels them instead.
        self._tls_handshaking: set[asyncio.Task[None]] = set()
        # Every open connection, with the peer it belongs to once its handshake passed.
        self.connections: dict[FramedConnection, str | None] = {}
        # The connection each peer sends on now.
        self._current: dict[str, FramedConnection] = {}

    def accepted(self, sock: socket.socket) -> None:
        """Take a just-accepted socket; a task sets it up and, on failure, closes it."""
        task = asyncio.get_running_loop().create_task(
            self._set_up(sock), name=f"almost-raft tcp inbound {self._node_id}"
        )
        self._setups.add(task)
        task.add_done_callback(self._setup_done)

    def connected(self, node_id: str) -> bool:
        """Whether ``node_id`` has a connection to this node open now."""
        return node_id in self._current

    def remove_peer(self, node_id: str) -> None:
        """Close ``node_id``'s connection; its next message on any other is refused."""
        connection = self._current.pop(node_id, None)
        if connection is not None:
            connection.abort()

    async def close(self) -> None:
        """Close every connection and end every task; nothing is accepted any more."""
        self._closed = True
        for connection in list(self.connections):
            connection.abort()
        for task in self._tls_handshaking:
            task.cancel()
        waits = [*self._setups, *(c.wait_closed() for c in self.connections)]
        if waits:
            # wait(), not gather(): if close() itself is cancelled, the tasks still end.
            await asyncio.wait([asyncio.ensure_future(w) for w in waits])

    # ------------------------------------------------------------------ setting up

    def _setup_done(self, task: asyncio.Task[None]) -> None:
        self._setups.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s: %s failed", self._node_id, task.get_name(), exc_info=exc)

    async def _set_up(self, sock: socket.socket) -> None:
        """Connect the socket, check the dialler's handshake, then let it deliver."""
        try:
            peername = sock.getpeername()
            who = f"{peername[0]}:{peername[1]}"
        except OSError:
            who = "?"
        tune_received(sock, self._settings)
        connection = FramedConnection(self._settings.max_frame_bytes, on_lost=self._lost)
        try:
            if self._closed:
                return
            await self._connect(sock, connection)
            if self._closed:
                return
            # Even a connection its peer closed already is read: what it sent still counts.
            if not connection.lost:
                self.connections[connection] = None
            self._metrics.accepted += 1
            node_id = await self._handshake(connection, who)
            if node_id is None:
                return
            if connection in self.connections:  # not lost during the handshake
                self.connections[connection] = node_id
            who = f"{node_id} ({who})"
            logger.debug("%s: accepted %s", self._node_id, who)
            connection.receive(
                # A partial, not a lambda: called for every frame, it adds no Python frame.
                functools.partial(self._frame_received, connection, node_id),
                lambda exc: self._refused(who, exc),
            )
        except ssl.SSLError as exc:
            self._metrics.count(FrameProblem.TLS)
            hint = ""
            if exc.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"):
                hint = (
                    " (the peer does not speak TLS: every node of a cluster uses [tls], "
                    "or none does)"
                )
            self._refusals.warn(
                "tls", "%s: TLS handshake from %s failed: %s%s", self._node_id, who, exc, hint
            )
        except (OSError, TimeoutError) as exc:
            logger.debug("%s: connection from %s failed: %r", self._node_id, who, exc)
        finally:
            if connection.transport is None:
                sock.close()
            elif self._closed or connection.closed or self.connections.get(connection) is None:
                connection.abort()
                await connection.wait_closed()

    async def _connect(self, sock: socket.socket, connection: FramedConnection) -> None:
        """Make ``connection`` the protocol of ``sock``, after the TLS handshake if any.

        Raises:
            ssl.SSLError: the TLS handshake failed (no certificate from the CA...).
            OSError, TimeoutError: the connection failed or the handshake took too long.
        """
        loop = asyncio.get_running_loop()
        tls = self._settings.tls
        if tls is None:
            await loop.connect_accepted_socket(lambda: connection, sock)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tls_handshaking.add(task)
        try:
            async with asyncio.timeout(self._settings.handshake_timeout):
                await loop.connect_accepted_socket(lambda: connection, sock, ssl=tls.server)
        finally:
            self._tls_handshaking.discard(task)

    async def _handshake(self, connection: FramedConnection, who: str) -> str | None:
        """The id of the peer that opened ``connection``, or None if it is refused.

        Raises:
            OSError: the connection failed.
        """
        try:
            # The whole handshake, proof of the secret included, has one deadline.
            try:
                async with asyncio.timeout(self._settings.handshake_timeout):
                    handshake = await self._check_handshake(connection)
            except TimeoutError:
                raise WireError(
                    FrameProblem.HANDSHAKE_REFUSED,
                    f"no handshake within {self._settings.handshake_timeout} s",
                ) from None
        except WireError as exc:
            self._refused(who, exc)
            return None
        self._metrics.handshakes_accepted += 1
        return handshake.node_id

    async def _check_handshake(self, connection: FramedConnection) -> Handshake:
        """Read the dialler's handshake and check who it is, by every means configured.

        Raises:
            WireError: refused: the handshake is wrong (``HANDSHAKE_REFUSED``), the
                certificate names another node (``IDENTITY``), or the dialler did not
                prove the secret (``AUTH``).
        """
        settings = self._settings
        handshake = decode_handshake(await connection.read_frame(), settings.max_frame_bytes)
        check_handshake(
            handshake, cluster_id=settings.cluster_id, our_id=self._node_id, peers=self._peers
        )
        if settings.tls is not None:
            assert connection.transport is not None
            peercert = connection.transport.get_extra_info("peercert")
            require_certificate_name(peercert, handshake.node_id, "claims")
        if settings.secret is not None:
            from ._auth import accept_proof

            await accept_proof(
                settings.secret, handshake, self._node_id, connection.read_frame, connection
            )
        elif handshake.nonce is not None:
            raise WireError(
                FrameProblem.AUTH,
                "the peer proves a shared secret and this node has none: set secret_file "
                "in this node's cluster file to the cluster's secret",
            )
        return handshake

    # ------------------------------------------------------------------ receiving

    def _frame_received(self, connection: FramedConnection, node_id: str, body: bytes) -> None:
        """Decode one frame of ``node_id``'s connection and deliver it.

        Raises:
            WireError: the frame is not a valid message from ``node_id``; the connection
                then ends (:meth:`FramedConnection.receive`).
        """
        message = decode_message(body, self._settings.max_frame_bytes)
        if message.sender != node_id:
            raise WireError(
                FrameProblem.IMPERSONATION,
                f"{type(message).__name__} from {message.sender!r}",
            )
        peer = self._peers.get(node_id)
        if peer is None:
            logger.info("%s: closed the connection of removed peer %s", self._node_id, node_id)
            connection.abort()
            return
        # The answer to what our connection to the peer carried (see AnswerWatch).
        peer.heard += 1
        current = self._current.get(node_id)
        # A message that came with the handshake of a connection closed since still counts,
        # but that connection can no longer be the peer's.
        if current is not connection and not connection.lost:
            # The peer redialled, so its previous connection is dead or dying.
            if current is not None:
                current.abort()
            self._current[node_id] = connection
        # MessageCounts.add(), inline: once per message.
        received = self._metrics.received
        kind = KIND_NAMES[type(message)]
        setattr(received, kind, getattr(received, kind) + 1)
        self._inbox.deliver(message)

    def _refused(self, who: str, exc: WireError) -> None:
        self._metrics.count(exc.problem)
        self._refusals.warn(
            exc.problem.name, "%s: closed the connection from %s: %s", self._node_id, who, exc
        )

    def _lost(self, connection: FramedConnection) -> None:
        node_id = self.connections.pop(connection, None)
        if node_id is not None:
            current = self._current.get(node_id) is connection
            if current:
                del self._current[node_id]
            logger.debug(
                "%s: connection from %s ended: %r", self._node_id, node_id, connection.reason
            )
            if current and connection.ended_by_peer and not self._closed:
                # Not one the peer replaced by redialling (this node closed that one).
                self._inbox.peer_disconnected(node_id)

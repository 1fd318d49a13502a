"""The TCP transport: framed, versioned messages between the nodes of a real cluster.

Theory of operation
-------------------
Each node listens on one address and keeps one outbound connection to each peer, used
only to send; what a peer sends arrives on the connection *it* opened to us, so every
inbound connection only receives. Every connection opens with the dialler's handshake
(:mod:`._wire`): a connection from another protocol version, another cluster or an
unknown node is refused, counted and closed.

``send()`` never waits for the network: it encodes the message and appends it to the
peer's bounded queue. A sender task per peer connects, writes the handshake, drains the
queue and redials with exponential backoff and jitter when the connection fails. When a
peer is slow or down its queue fills and its oldest messages are dropped; an election
message that waited long is stale anyway, and nothing about one peer can hold up
another.

Rules
-----
Rule 1 (peer input never raises). Anything wrong in what a peer sends closes that one
connection with a log line and a counter in :class:`TcpMetrics`; the transport keeps
serving everyone else and the runtime never sees an exception.

Rule 2 (bounded memory). Per peer, at most ``queue_size`` messages wait in Python, and
about ``send_buffer_bytes`` in each of the asyncio and kernel send buffers; frames
larger than ``max_frame_bytes`` are refused before their body is read.

Rule 3 (a connection speaks for one node). A message whose sender is not the node that
opened the connection is refused as an impersonation.

Rule 4 (proof before trust). With mutual TLS (:mod:`._tls`) a connection is refused
unless the peer's certificate, signed by the cluster's CA, names the node id it claims
or that we dialled. With a shared secret (:mod:`._auth`) it is refused unless the peer
proves the secret on this very connection. Either check passes before any message is
read, and every refusal is logged and counted (``bad_tls``, ``bad_identity``,
``bad_auth``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Mapping

from ._errors import ConfigError
from ._listener import Listener
from ._log_limit import LimitedWarnings
from ._messages import PeerMessage
from ._tcp_metrics import ConnectFailure, MessageCounts, TcpMetrics
from ._tls import TlsConfig, certificate_names
from ._transport import Inbox, Transport
from ._wire import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_BYTES,
    MIN_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    FrameProblem,
    Handshake,
    WireError,
    check_handshake,
    check_wire_id,
    decode_handshake,
    decode_message,
    encode_handshake,
    encode_message,
    frame_length,
    message_kind,
    require_msgpack,
)

# The metrics types are re-exported: they are part of what a TcpTransport shows.
__all__ = ["ConnectFailure", "MessageCounts", "TcpMetrics", "TcpTransport"]

logger = logging.getLogger("almost_raft.tcp")

Address = tuple[str, int]

# The longest exponent the backoff computes, so a peer down for days cannot overflow it.
_MAX_BACKOFF_DOUBLINGS = 32


#: How long close() lets queued messages to connected peers drain.
_FLUSH_SECONDS = 0.25


class _Peer:
    """What the transport keeps per peer: where it is, and what waits to go there."""

    __slots__ = (
        "address",
        "connected",
        "failing",
        "lost",
        "node_id",
        "queue",
        "sender",
        "wakeup",
    )

    def __init__(self, node_id: str, address: Address) -> None:
        self.node_id = node_id
        self.address = address
        self.queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self.wakeup = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        # Only the first failure of a run is logged above debug level.
        self.failing = False
        # An established connection just broke; the next dial is the probe that tells a
        # dead process (refused) from a blip (reconnects).
        self.lost = False
        self.connected = False


class TcpTransport(Transport):
    """Carries peer messages over TCP, with a handshake, bounded queues and reconnects.

    Needs the optional dependency msgpack: ``pip install 'almost-raft[tcp]'``.

    Delivery is best effort, as the :class:`Transport` contract allows: a message can be
    dropped (full queue, broken connection) and never arrives twice, but no order across
    a reconnection is promised.

    Args:
        listen: ``(host, port)`` to accept connections on; port 0 picks a free port,
            which :attr:`address` tells once started.
        peers: the address of every peer, by node id. Only these ids may connect.
        cluster_id: every node of a cluster must use the same one; it keeps two
            clusters that share hosts from talking to each other.
        max_frame_bytes: the largest frame accepted (at least 4096).
        queue_size: how many messages wait per peer before the oldest is dropped.
        connect_timeout: seconds a dial may take.
        handshake_timeout: seconds an inbound connection has to send its handshake.
        write_timeout: seconds a peer may leave our writes unread before its connection
            is closed and redialled.
        backoff_initial: seconds before the first redial after a failure; each further
            failure doubles it, up to ``backoff_max``. Each wait is jittered to between
            half and all of that.
        backoff_max: the longest wait between dials. A connection that stays up this long
            counts as healthy and resets the backoff.
        send_buffer_bytes: the size of each connection's asyncio and kernel send buffers;
            small, so a message never waits behind a heap of stale ones.
        rng: the source of the backoff jitter, for reproducible runs.
        tls: mutual TLS for every connection (:class:`TlsConfig`); None for plain TCP.
        secret: the cluster's shared secret (at least 16 bytes); every connection then
            starts with both ends proving they know it. None for no such proof. Every
            node of a cluster must use the same settings for both.

    Raises:
        ConfigError: an argument is invalid.
        ImportError: msgpack is not installed.
    """

    def __init__(
        self,
        *,
        listen: Address,
        peers: Mapping[str, Address],
        cluster_id: str,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        queue_size: int = 64,
        connect_timeout: float = 1.0,
        handshake_timeout: float = 5.0,
        write_timeout: float = 5.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        send_buffer_bytes: int = 64 * 1024,
        rng: random.Random | None = None,
        tls: TlsConfig | None = None,
        secret: bytes | None = None,
    ) -> None:
        require_msgpack()
        if tls is not None and not isinstance(tls, TlsConfig):
            raise ConfigError("tls", tls, "must be a TlsConfig, e.g. TlsConfig.from_files(...)")
        self._tls = tls
        self._secret: bytes | None = None
        if secret is not None:
            # Imported only with a secret: the handshake's hashlib, hmac and secrets would
            # cost every node without one 0.9 MiB of RSS.
            from ._auth import check_secret

            self._secret = check_secret("secret", secret)
        self._listen = _check_address("listen", listen, allow_port_zero=True)
        _check_id("cluster_id", cluster_id)
        self._cluster_id = cluster_id
        _check_int("max_frame_bytes", max_frame_bytes, minimum=MIN_MAX_FRAME_BYTES)
        self._max_frame_bytes = max_frame_bytes
        _check_int("queue_size", queue_size, minimum=1)
        self._queue_size = queue_size
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("handshake_timeout", handshake_timeout),
            ("write_timeout", write_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            _check_seconds(name, seconds)
        if backoff_max < backoff_initial:
            raise ConfigError(
                "backoff_max", backoff_max, f"must be at least backoff_initial ({backoff_initial})"
            )
        self._connect_timeout = connect_timeout
        self._handshake_timeout = handshake_timeout
        self._write_timeout = write_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        _check_int("send_buffer_bytes", send_buffer_bytes, minimum=1024)
        self._send_buffer_bytes = send_buffer_bytes
        self._rng = rng or random.Random()
        if not isinstance(peers, Mapping):
            raise ConfigError("peers", peers, "must map each peer's node id to (host, port)")
        self._peers: dict[str, _Peer] = {}
        for node_id, address in peers.items():
            _check_id("peers", node_id)
            self._peers[node_id] = _Peer(
                node_id, _check_address(f"peers[{node_id!r}]", address, allow_port_zero=False)
            )

        self.metrics = TcpMetrics()
        self._node_id: str | None = None
        self._inbox: Inbox | None = None
        self._refusals = LimitedWarnings(logger)
        # Set whenever a sender emptied its queue into its socket; close() waits on it.
        self._wrote = asyncio.Event()
        self._listener: Listener | None = None
        self._closed = False
        # The sender task of every peer, and any still ending after their peer moved.
        self._senders: set[asyncio.Task[None]] = set()
        # Every inbound connection, by the task serving it (None until its streams are
        # set up). close() aborts the connections rather than cancelling the tasks, so
        # that each task, even one that has not run yet, closes its own socket.
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter | None] = {}
        # The current inbound connection of each peer that has one.
        self._inbound: dict[str, asyncio.StreamWriter] = {}
        # Inbound connections still in their TLS handshake: they have no writer to abort
        # yet, so close() cancels them instead.
        self._tls_handshaking: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ public API

    @property
    def address(self) -> Address:
        """The ``(host, port)`` this transport listens on.

        Raises:
            RuntimeError: the transport has not been started, or is closed.
        """
        if self._listener is None or self._closed:
            raise RuntimeError("the transport is not listening; start() it first")
        return self._listener.address

    @property
    def peer_addresses(self) -> dict[str, Address]:
        """A copy of the configured peer addresses, by node id."""
        return {node_id: peer.address for node_id, peer in self._peers.items()}

    def queued(self, peer_id: str) -> int:
        """How many messages wait to be sent to ``peer_id`` (0 for an unknown peer)."""
        peer = self._peers.get(peer_id)
        return 0 if peer is None else len(peer.queue)

    async def start(self, node_id: str, inbox: Inbox) -> None:
        """Listen, and hand every message peers send to ``inbox``.

        Raises:
            ConfigError: ``node_id`` is not a valid id.
            RuntimeError: the transport was already started, or is closed.
            OSError: the listen address cannot be bound.
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._node_id is not None:
            raise RuntimeError("the transport is already started")
        _check_id("node_id", node_id)
        self._node_id = node_id
        self._inbox = inbox
        host, port = self._listen
        try:
            self._listener = await Listener.open(host, port, self._accepted)
        except BaseException:
            self._node_id = None
            self._inbox = None
            raise
        protections = [
            name
            for name, on in (("mutual TLS", self._tls), ("shared secret", self._secret))
            if on is not None
        ]
        logger.info(
            "%s: listening on %s:%d (%s)",
            node_id,
            *self.address,
            " and ".join(protections) or "no TLS, no shared secret",
        )
        for peer in self._peers.values():
            self._start_sender(peer)

    async def send(self, to: str, message: PeerMessage) -> None:
        """Queue ``message`` for the peer ``to`` and return at once.

        A message for a peer with no configured address, or sent after :meth:`close`, is
        dropped and counted. When the peer's queue is full its oldest message is dropped.

        Raises:
            RuntimeError: the transport has not been started.
            ValueError: ``message`` was not sent by this node.
        """
        if self._node_id is None:
            raise RuntimeError("start() the transport before sending")
        if message.sender != self._node_id:
            raise ValueError(
                f"node {self._node_id!r} cannot send a message from {message.sender!r}"
            )
        if self._closed:
            self.metrics.dropped_not_connected += 1
            return
        peer = self._peers.get(to)
        if peer is None:
            self.metrics.dropped_unknown_peer += 1
            logger.debug("%s: no address for %r, dropped %r", self._node_id, to, message)
            return
        frame = encode_message(message)
        if len(peer.queue) >= self._queue_size:
            peer.queue.popleft()
            self.metrics.dropped_queue_full += 1
        peer.queue.append((message_kind(message), frame))
        peer.wakeup.set()

    def set_peer_address(self, node_id: str, address: Address) -> None:
        """Add the peer ``node_id`` at ``address``, or move it there.

        A peer that moved is redialled at once at its new address; messages already
        queued for it are kept.

        Raises:
            ConfigError: ``node_id`` or ``address`` is invalid.
        """
        _check_id("node_id", node_id)
        address = _check_address("address", address, allow_port_zero=False)
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = _Peer(node_id, address)
            logger.info("%s: added peer %s at %s:%d", self._node_id, node_id, *address)
        elif peer.address != address:
            peer.address = address
            logger.info("%s: peer %s moved to %s:%d", self._node_id, node_id, *address)
            if peer.sender is not None:
                peer.sender.cancel()
                peer.sender = None
        else:
            return
        self._start_sender(peer)

    def remove_peer(self, node_id: str) -> None:
        """Forget the peer ``node_id``: drop its queue and close its connections.

        From now on it may not connect, and messages for it are dropped. Removing an
        unknown peer does nothing.
        """
        peer = self._peers.pop(node_id, None)
        if peer is None:
            return
        if peer.sender is not None:
            peer.sender.cancel()
            peer.sender = None
        self.metrics.dropped_not_connected += len(peer.queue)
        peer.queue.clear()
        inbound = self._inbound.pop(node_id, None)
        if inbound is not None:
            inbound.transport.abort()
        logger.info("%s: removed peer %s", self._node_id, node_id)

    async def close(self) -> None:
        """Stop listening, close every connection and end every task. Idempotent.

        Messages queued for peers that are connected get up to a quarter of a second to
        leave; what is still queued then is dropped and counted. When it returns, no task
        or socket of this transport is left.
        """
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        # Give messages queued for connected peers a moment to leave: the last one a
        # leader sends before it exits hands leadership over.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FLUSH_SECONDS):
                while any(peer.queue and peer.connected for peer in self._peers.values()):
                    self._wrote.clear()
                    await self._wrote.wait()
        for peer in self._peers.values():
            self.metrics.dropped_not_connected += len(peer.queue)
            peer.queue.clear()
            peer.sender = None
        for task in self._senders:
            task.cancel()
        for writer in self._handlers.values():
            if writer is not None:
                writer.transport.abort()
        for task in self._tls_handshaking:
            task.cancel()
        tasks = [*self._senders, *self._handlers]
        if tasks:
            # wait(), not gather(): if close() itself is cancelled, the tasks still end.
            await asyncio.wait(tasks)
        logger.info("%s: transport closed", self._node_id)

    # ------------------------------------------------------------------ sending

    def _start_sender(self, peer: _Peer) -> None:
        if self._node_id is None or self._closed:
            return
        task = asyncio.create_task(
            self._run_sender(peer), name=f"almost-raft tcp sender {self._node_id}->{peer.node_id}"
        )
        self._senders.add(task)
        task.add_done_callback(self._sender_done)
        peer.sender = task
        if peer.queue:
            peer.wakeup.set()

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        self._senders.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s: %s failed", self._node_id, task.get_name(), exc_info=exc)

    async def _run_sender(self, peer: _Peer) -> None:
        """Dial ``peer`` whenever messages wait for it, and keep the connection fed."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            if not peer.lost:
                await peer.wakeup.wait()
                if not peer.queue:
                    peer.wakeup.clear()
                    continue
            probe, peer.lost = peer.lost, False
            connection = await self._connect(peer, probe=probe)
            if connection is None:
                # What waited for a dead peer is stale by the time it is back.
                self.metrics.dropped_not_connected += len(peer.queue)
                peer.queue.clear()
                failures += 1
                await asyncio.sleep(self._backoff_delay(failures))
                continue
            reader, writer = connection
            opened_at = loop.time()
            try:
                await self._pump(peer, reader, writer)
            except OSError as exc:
                logger.info(
                    "%s: connection to %s lost: %s", self._node_id, peer.node_id, exc or repr(exc)
                )
                peer.lost = True
            finally:
                self.metrics.disconnects += 1
                await _abort(writer)
            # A connection that lasted proves the peer healthy; one that ended at once (a
            # peer refusing our handshake, say) must not make us redial in a tight loop.
            # Anything in between is redialled at once, because that redial is the probe
            # that tells a dead leader from a blip, and it must not wait a backoff.
            lasted = loop.time() - opened_at
            failures = 0 if lasted >= self._backoff_max else failures + 1
            if failures and lasted < 2 * self._backoff_initial:
                await asyncio.sleep(self._backoff_delay(failures))

    def _backoff_delay(self, failures: int) -> float:
        doublings = min(failures - 1, _MAX_BACKOFF_DOUBLINGS)
        ceiling = min(self._backoff_max, self._backoff_initial * 2.0**doublings)
        # Jitter, so nodes that lost a peer together do not all redial at the same instant.
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _connect(
        self, peer: _Peer, *, probe: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        host, port = peer.address
        try:
            # asyncio.timeout(), not wait_for(): on Python 3.11 wait_for() can swallow a
            # cancellation that arrives as the connection completes, and close() would
            # then wait for this task forever.
            async with asyncio.timeout(self._connect_timeout):
                if self._tls is None:
                    reader, writer = await asyncio.open_connection(host, port)
                else:
                    reader, writer = await asyncio.open_connection(
                        host, port, ssl=self._tls.client, server_hostname=host
                    )
        except ssl.SSLError as exc:
            self.metrics.count(FrameProblem.TLS)
            self._report_refusal(peer, "TLS handshake failed", exc)
            return None
        except ConnectionRefusedError as exc:
            self._report_connect_failure(peer, ConnectFailure.REFUSED, exc)
            if probe and self._inbox is not None:
                # The connection broke and the host now refuses: the process is gone.
                self._inbox.peer_unreachable(peer.node_id)
            return None
        except TimeoutError as exc:
            self._report_connect_failure(peer, ConnectFailure.TIMEOUT, exc)
            return None
        except OSError as exc:
            self._report_connect_failure(peer, ConnectFailure.OTHER, exc)
            return None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # A fixed size also turns off the kernel's buffer autotuning, which would
            # otherwise let megabytes of stale messages queue for a peer that stopped reading.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer_bytes)
        writer.transport.set_write_buffer_limits(high=self._send_buffer_bytes)
        try:
            async with asyncio.timeout(self._handshake_timeout):
                await self._introduce(peer, reader, writer)
        except WireError as exc:
            self.metrics.count(exc.problem)
            self._report_refusal(peer, "refused the connection", exc)
            await _abort(writer)
            return None
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            # The acceptor closed on our handshake: another secret, or a TLS certificate
            # it refused. Its own log says which.
            self._report_refusal(peer, "closed the connection during the handshake", exc)
            await _abort(writer)
            return None
        except BaseException:
            # Cancelled (close()) while waiting for the acceptor: nobody else owns the socket.
            writer.transport.abort()
            raise
        self.metrics.connects += 1
        peer.failing = False
        logger.info("%s: connected to %s at %s:%d", self._node_id, peer.node_id, host, port)
        return reader, writer

    async def _introduce(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Check the acceptor's certificate, send our handshake and prove the secret.

        Raises:
            WireError: the acceptor is not ``peer`` (``IDENTITY``) or did not prove the
                secret (``AUTH``).
            OSError, asyncio.IncompleteReadError: the connection failed.
        """
        assert self._node_id is not None
        if self._tls is not None:
            names = certificate_names(writer.get_extra_info("peercert"))
            if peer.node_id not in names:
                raise WireError(
                    FrameProblem.IDENTITY,
                    f"dialled {peer.node_id!r}, its certificate names {sorted(names)}",
                )
        nonce = None
        if self._secret is not None:
            from ._auth import new_nonce

            nonce = new_nonce()
        handshake = Handshake(PROTOCOL_VERSION, self._cluster_id, self._node_id, nonce)
        writer.write(encode_handshake(handshake))
        if self._secret is not None:
            from ._auth import prove

            await prove(
                self._secret, handshake, peer.node_id, lambda: self._read_frame(reader), writer
            )

    def _report_refusal(self, peer: _Peer, what: str, exc: BaseException) -> None:
        # Every refusal is worth a warning: a misconfigured or hostile peer, not a blip.
        peer.failing = True
        logger.warning(
            "%s: %s at %s:%d %s: %s",
            self._node_id,
            peer.node_id,
            *peer.address,
            what,
            exc or repr(exc),
        )

    def _report_connect_failure(self, peer: _Peer, failure: ConnectFailure, exc: OSError) -> None:
        """Count and log a failed dial of ``peer``.

        This is where the transport's evidence about a peer's health starts. ``REFUSED``
        means the peer's host answered and nothing listens on the port: its process is
        gone, which is worth an election at once; the caller reports it to the inbox when
        it follows a connection that just broke. ``TIMEOUT`` and ``OTHER`` say only that
        the network did not carry the dial, which is no evidence.
        """
        self.metrics.count(failure)
        level = logging.DEBUG if peer.failing else logging.INFO
        peer.failing = True
        logger.log(
            level,
            "%s: cannot connect to %s at %s:%d (%s): %s",
            self._node_id,
            peer.node_id,
            *peer.address,
            failure.name.lower(),
            exc or repr(exc),
        )

    async def _pump(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write the handshake, then every queued message, until the connection fails.

        Raises:
            OSError: always, eventually: the connection broke or the peer stopped reading.
        """
        peer.connected = True
        # The peer never writes on this connection, so a read completes only when it
        # closes it: the quickest way to learn it is gone before a write fails.
        closed = asyncio.create_task(reader.read(1))
        # The end of the connection wakes this loop as a queued message does: one callback
        # per connection. A task and a wait() per batch of messages were a third of the
        # Python calls an idle follower made per heartbeat.
        closed.add_done_callback(lambda _: peer.wakeup.set())
        try:
            while True:
                peer.wakeup.clear()
                while peer.queue:
                    kind, frame = peer.queue.popleft()
                    writer.write(frame)
                    self.metrics.sent.add(kind)
                self._wrote.set()
                if writer.transport.get_write_buffer_size():
                    # Only what the kernel did not take waits in asyncio's buffer; drain()
                    # blocks only once that is above the limit. A broken connection is
                    # learnt from ``closed``, which also ends a read failed by an error.
                    try:
                        async with asyncio.timeout(self._write_timeout):
                            await writer.drain()
                    except TimeoutError:
                        raise TimeoutError(
                            f"the peer read nothing for {self._write_timeout} s"
                        ) from None
                await peer.wakeup.wait()
                if closed.done():
                    data = closed.result()
                    raise ConnectionResetError(
                        "the peer wrote on a send-only connection"
                        if data
                        else "the peer closed the connection"
                    )
        finally:
            peer.connected = False
            if not closed.done():
                closed.cancel()
                await asyncio.wait((closed,))
            if not closed.cancelled():
                closed.exception()  # mark it retrieved, whatever it was

    # ------------------------------------------------------------------ receiving

    def _accepted(self, conn: socket.socket) -> None:
        """Give a just-accepted socket a task that serves it and, in the end, closes it."""
        task = asyncio.get_running_loop().create_task(
            self._serve(conn), name=f"almost-raft tcp inbound {self._node_id}"
        )
        self._handlers[task] = None
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        del self._handlers[task]
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s: %s failed", self._node_id, task.get_name(), exc_info=exc)

    async def _serve(self, conn: socket.socket) -> None:
        """Set up one inbound connection's streams, receive on it, and close it."""
        try:
            peername = conn.getpeername()
            who = f"{peername[0]}:{peername[1]}"
        except OSError:
            who = "?"
        writer: asyncio.StreamWriter | None = None
        try:
            if self._closed:
                return
            reader, writer = await self._open_inbound(conn)
            if self._closed:
                return
            task = asyncio.current_task()
            assert task is not None
            self._handlers[task] = writer
            await self._receive(reader, writer, who)
        except ssl.SSLError as exc:
            self.metrics.count(FrameProblem.TLS)
            self._refusals.warn(
                "tls", "%s: TLS handshake from %s failed: %s", self._node_id, who, exc
            )
        except (OSError, TimeoutError) as exc:
            logger.debug("%s: connection from %s failed: %r", self._node_id, who, exc)
        finally:
            if writer is None:
                conn.close()
            else:
                await _abort(writer)

    async def _open_inbound(
        self, conn: socket.socket
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Streams on an accepted socket, after the TLS handshake when TLS is on.

        Raises:
            ssl.SSLError: the TLS handshake failed (no certificate from the CA...).
            OSError, TimeoutError: the connection failed or the handshake took too long.
        """
        if self._tls is None:
            return await asyncio.open_connection(sock=conn)
        # asyncio.open_connection() cannot take the server side of TLS; this is what
        # asyncio.start_server() does for each connection it accepts.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._tls_handshaking.add(task)
        try:
            reader = asyncio.StreamReader(loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            async with asyncio.timeout(self._handshake_timeout):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, conn, ssl=self._tls.server
                )
        finally:
            self._tls_handshaking.discard(task)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _receive(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str
    ) -> None:
        """Check the connection's handshake, then deliver its messages until it ends."""
        assert self._node_id is not None
        assert self._inbox is not None
        self.metrics.accepted += 1
        node_id: str | None = None
        try:
            # The whole handshake, proof of the secret included, has one deadline.
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    handshake = await self._check_handshake(reader, writer)
            except TimeoutError:
                raise WireError(
                    FrameProblem.HANDSHAKE_REFUSED,
                    f"no handshake within {self._handshake_timeout} s",
                ) from None
            node_id = handshake.node_id
            who = f"{node_id} ({who})"
            self.metrics.handshakes_accepted += 1
            logger.debug("%s: accepted %s", self._node_id, who)
            while True:
                message = decode_message(await self._read_frame(reader), self._max_frame_bytes)
                if message.sender != node_id:
                    raise WireError(
                        FrameProblem.IMPERSONATION,
                        f"{type(message).__name__} from {message.sender!r}",
                    )
                if node_id not in self._peers:
                    logger.info("%s: closed the connection of removed peer %s", self._node_id, who)
                    return
                if self._inbound.get(node_id) is not writer:
                    # The peer redialled, so its previous connection is dead or dying.
                    # Replaced only now, on a valid message, so that a bare handshake
                    # naming a peer cannot cut that peer off.
                    previous = self._inbound.get(node_id)
                    if previous is not None:
                        previous.transport.abort()
                    self._inbound[node_id] = writer
                self.metrics.received.add(message_kind(message))
                self._inbox.deliver(message)
        except WireError as exc:
            self.metrics.count(exc.problem)
            self._refusals.warn(
                exc.problem.name,
                "%s: closed the connection from %s: %s",
                self._node_id,
                who,
                exc,
            )
        except (asyncio.IncompleteReadError, OSError) as exc:
            logger.debug("%s: connection from %s ended: %r", self._node_id, who, exc)
        finally:
            if node_id is not None and self._inbound.get(node_id) is writer:
                del self._inbound[node_id]

    async def _check_handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Handshake:
        """Read the dialler's handshake and check who it is, by every means configured.

        Raises:
            WireError: refused: the handshake is wrong (``HANDSHAKE_REFUSED``), the
                certificate names another node (``IDENTITY``), or the dialler did not
                prove the secret (``AUTH``).
        """
        assert self._node_id is not None
        handshake = decode_handshake(await self._read_frame(reader), self._max_frame_bytes)
        check_handshake(
            handshake, cluster_id=self._cluster_id, our_id=self._node_id, peers=self._peers
        )
        if self._tls is not None:
            names = certificate_names(writer.get_extra_info("peercert"))
            if handshake.node_id not in names:
                raise WireError(
                    FrameProblem.IDENTITY,
                    f"claims {handshake.node_id!r}, its certificate names {sorted(names)}",
                )
        if self._secret is not None:
            from ._auth import accept_proof

            await accept_proof(
                self._secret, handshake, self._node_id, lambda: self._read_frame(reader), writer
            )
        elif handshake.nonce is not None:
            raise WireError(
                FrameProblem.AUTH, "the peer offers a shared secret; this node has none"
            )
        return handshake

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        """Read one frame's body, refusing an oversized one before reading it."""
        length = frame_length(await reader.readexactly(HEADER_BYTES), self._max_frame_bytes)
        return await reader.readexactly(length)


async def _abort(writer: asyncio.StreamWriter) -> None:
    """Close a connection now, discarding unsent data, and wait until it is closed."""
    writer.transport.abort()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _check_id(field: str, value: object) -> None:
    try:
        check_wire_id(field, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(field, value, str(exc)) from None


def _check_address(field: str, value: object, *, allow_port_zero: bool) -> Address:
    lowest = 0 if allow_port_zero else 1
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and isinstance(value[0], str)
        and value[0]
        and type(value[1]) is int
        and lowest <= value[1] <= 65535
    ):
        return (value[0], value[1])
    raise ConfigError(field, value, f"must be (host, port) with port in [{lowest}, 65535]")


def _check_int(field: str, value: object, *, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ConfigError(field, value, f"must be an integer of at least {minimum}")


def _check_seconds(field: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or value == float("inf")
    ):
        raise ConfigError(field, value, "must be a finite number of seconds greater than 0")

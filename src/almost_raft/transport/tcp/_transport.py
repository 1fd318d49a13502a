"""The TCP transport: framed, versioned messages between the nodes of a real cluster.

Theory of operation
-------------------
Each node listens on one address and keeps one outbound connection to each peer, used
only to send; what a peer sends arrives on the connection *it* opened to us, so every
inbound connection only receives. Every connection opens with the dialler's handshake
(:mod:`._wire`): a connection from another protocol version, another cluster or an
unknown node is refused, counted and closed.

The transport is four small parts: this facade (arguments, peers, start and close),
the sending half (:mod:`._peer_link`), the receiving half (:mod:`._inbound`),
and the framed connection both run on (:mod:`._framing`), an ``asyncio.Protocol``.

``send()`` never waits for the network. A message for a connected peer is written to
its socket in the call; otherwise it waits in the peer's bounded queue while a dialler
task per peer connects, writes the handshake and redials with exponential backoff and
jitter when the connection fails. A message that arrives is decoded and handed to the
inbox in the connection's ``data_received``. When a peer is slow or down its queue fills
and its oldest messages are dropped; an election message that waited long is stale
anyway, and nothing about one peer can hold up another.

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

import logging
import random
from collections.abc import Mapping

from ...core._errors import ConfigError
from ...core._messages import PeerMessage
from .._interface import Inbox, Transport
from ._inbound import Inbound
from ._listener import Listener
from ._metrics import ConnectFailure, MessageCounts, TcpMetrics
from ._peer_link import Peer, PeerLink
from ._settings import (
    Address,
    TcpSettings,
    check_address,
    check_id,
    check_int,
    check_seconds,
)
from ._socket_tuning import RETRANSMIT_FLOOR_RANGE
from ._tls import TlsConfig
from ._wire import (
    DEFAULT_MAX_FRAME_BYTES,
    KIND_NAMES,
    MIN_MAX_FRAME_BYTES,
    encode_message,
    require_msgpack,
)

# The metrics types are re-exported: they are part of what a TcpTransport shows.
__all__ = ["ConnectFailure", "MessageCounts", "TcpMetrics", "TcpTransport"]

logger = logging.getLogger("almost_raft.tcp")

#: The bound on close()'s flush when its caller sets none (the runtime always does).
_DEFAULT_FLUSH_TIMEOUT = 0.25


class TcpTransport(Transport):
    """Carries peer messages over TCP, with a handshake, bounded queues and reconnects.

    Its wire format is msgpack, a dependency of almost-raft.

    Delivery is best effort, as the :class:`Transport` contract allows: a message can be
    dropped (full queue, broken connection) and never arrives twice, but no order across
    a reconnection is promised. Sending never waits: :meth:`send_nowait` is the
    transport's whole send path and :meth:`send` only calls it.

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
        answer_timeout: seconds a connection may carry heartbeats that the peer does not
            answer before it is given up and redialled (and, on Linux, its kernel's
            limit for unacknowledged data, ``TCP_USER_TIMEOUT``, which covers vote
            requests too: a voter in its leader lease leaves those unanswered). About an
            election timeout: after a partition heals, the node then rejoins within a
            round trip or a backoff instead of waiting out TCP's retransmission backoff.
            None never gives a connection up for this.
        min_retransmit_timeout: the least time the kernel waits before it resends a lost
            segment, where it lets a socket choose (Linux 6.15 and later; its own floor is
            200 ms). Each end then also acknowledges within a quarter of it. A lost vote
            or heartbeat is then resent after about the round trip plus its variation, not
            after 200 ms or more. A connection this node dials also asks for linear
            timeouts (``TCP_THIN_LINEAR_TIMEOUTS``), so a second loss waits no longer
            than the first. From 0.005 to 0.2 seconds; None leaves the kernel's floor and
            its doubling timers.
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
        answer_timeout: float | None = 1.0,
        min_retransmit_timeout: float | None = 0.02,
        rng: random.Random | None = None,
        tls: TlsConfig | None = None,
        secret: bytes | None = None,
    ) -> None:
        require_msgpack()
        if tls is not None and not isinstance(tls, TlsConfig):
            raise ConfigError("tls", tls, "must be a TlsConfig, e.g. TlsConfig.from_files(...)")
        if secret is not None:
            # Imported only with a secret: the handshake's hashlib, hmac and secrets would
            # cost every node without one 0.9 MiB of RSS.
            from ._auth import check_secret

            secret = check_secret("secret", secret)
        self._listen = check_address("listen", listen, allow_port_zero=True)
        check_id("cluster_id", cluster_id)
        check_int("max_frame_bytes", max_frame_bytes, minimum=MIN_MAX_FRAME_BYTES)
        check_int("queue_size", queue_size, minimum=1)
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("handshake_timeout", handshake_timeout),
            ("write_timeout", write_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            check_seconds(name, seconds)
        if answer_timeout is not None:
            check_seconds("answer_timeout", answer_timeout)
        if min_retransmit_timeout is not None:
            low, high = RETRANSMIT_FLOOR_RANGE
            if (
                isinstance(min_retransmit_timeout, bool)
                or not isinstance(min_retransmit_timeout, int | float)
                or not low <= min_retransmit_timeout <= high
            ):
                raise ConfigError(
                    "min_retransmit_timeout",
                    min_retransmit_timeout,
                    f"must be seconds from {low} to {high} (what the kernel accepts), "
                    "or None for the kernel's own floor",
                )
        if backoff_max < backoff_initial:
            raise ConfigError(
                "backoff_max", backoff_max, f"must be at least backoff_initial ({backoff_initial})"
            )
        check_int("send_buffer_bytes", send_buffer_bytes, minimum=1024)
        self._settings = TcpSettings(
            cluster_id=cluster_id,
            max_frame_bytes=max_frame_bytes,
            queue_size=queue_size,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
            write_timeout=write_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            send_buffer_bytes=send_buffer_bytes,
            tls=tls,
            secret=secret,
            answer_timeout=answer_timeout,
            min_retransmit_timeout=min_retransmit_timeout,
        )
        self._rng = rng or random.Random()
        if not isinstance(peers, Mapping):
            raise ConfigError("peers", peers, "must map each peer's node id to (host, port)")
        self._peers: dict[str, Peer] = {}
        for node_id, address in peers.items():
            check_id("peers", node_id)
            self._peers[node_id] = Peer(
                node_id, check_address(f"peers[{node_id!r}]", address, allow_port_zero=False)
            )

        self.metrics = TcpMetrics()
        self._node_id: str | None = None
        self._listener: Listener | None = None
        self._peer_link: PeerLink | None = None
        self._inbound: Inbound | None = None
        self._closed = False
        # The last message encoded, and its frame (messages are immutable).
        self._last_sent: PeerMessage | None = None
        self._last_frame = b""

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
        check_id("node_id", node_id)
        self._node_id = node_id
        inbound = Inbound(node_id, inbox, self._settings, self.metrics, self._peers)
        host, port = self._listen
        try:
            self._listener = await Listener.open(host, port, inbound.accepted)
        except BaseException:
            self._node_id = None
            raise
        self._inbound = inbound
        self._peer_link = PeerLink(
            node_id, inbox, self._settings, self.metrics, self._rng, inbound.connected
        )
        protections = [
            name
            for name, on in (
                ("mutual TLS", self._settings.tls),
                ("shared secret", self._settings.secret),
            )
            if on is not None
        ]
        logger.info(
            "%s: listening on %s:%d (%s)",
            node_id,
            *self.address,
            " and ".join(protections) or "no TLS, no shared secret",
        )
        for peer in self._peers.values():
            self._peer_link.start(peer)

    def send_nowait(self, to: str, message: PeerMessage) -> bool:
        """Write ``message`` to the peer ``to`` now, or queue it; always returns True.

        A message for a peer with no configured address, or sent after :meth:`close`, is
        dropped and counted. When the peer's queue is full its oldest message is dropped.

        Raises:
            RuntimeError: the transport has not been started.
            ValueError: ``message`` was not sent by this node.
        """
        link = self._peer_link
        if link is None:
            raise RuntimeError("start() the transport before sending")
        # A leader sends one heartbeat value to every peer that holds its configuration:
        # the frame of the first serves the others, and its sender was checked then.
        again = message is self._last_sent
        if not again and message.sender != self._node_id:
            raise ValueError(
                f"node {self._node_id!r} cannot send a message from {message.sender!r}"
            )
        if self._closed:
            self.metrics.dropped_not_connected += 1
            return True
        peer = self._peers.get(to)
        if peer is None:
            self.metrics.dropped_unknown_peer += 1
            logger.debug("%s: no address for %r, dropped %r", self._node_id, to, message)
            return True
        if again:
            frame = self._last_frame
        else:
            frame = encode_message(message)
            self._last_sent = message
            self._last_frame = frame
        link.send(peer, KIND_NAMES[type(message)], frame)
        return True

    async def send(self, to: str, message: PeerMessage) -> None:
        """Do what :meth:`send_nowait` does; returns at once.

        Raises:
            RuntimeError: the transport has not been started.
            ValueError: ``message`` was not sent by this node.
        """
        self.send_nowait(to, message)

    def set_peer_address(self, node_id: str, address: Address) -> None:
        """Add the peer ``node_id`` at ``address``, or move it there.

        A peer that moved is redialled at once at its new address; messages already
        queued for it are kept.

        Raises:
            ConfigError: ``node_id`` or ``address`` is invalid.
        """
        check_id("node_id", node_id)
        address = check_address("address", address, allow_port_zero=False)
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = Peer(node_id, address)
            logger.info("%s: added peer %s at %s:%d", self._node_id, node_id, *address)
        elif peer.address != address:
            peer.address = address
            logger.info("%s: peer %s moved to %s:%d", self._node_id, node_id, *address)
            if self._peer_link is not None:
                self._peer_link.stop(peer)
        else:
            return
        if self._peer_link is not None and not self._closed:
            self._peer_link.start(peer)

    def dial_on_demand(self, node_id: str, on_demand: bool = True) -> None:
        """Dial the peer ``node_id`` only while a message waits for it, or (``False``)
        keep a connection to it up again, as for every peer at first.

        For a peer that is no longer a member: it may still need a message (a member
        removed while it was down is told so when it comes back), but a machine that
        left for good should not be dialled for ever. An established connection is kept
        until it ends. An unknown peer is ignored.
        """
        peer = self._peers.get(node_id)
        if peer is None or peer.on_demand == on_demand:
            return
        if self._peer_link is None:
            peer.on_demand = on_demand
        else:
            self._peer_link.set_on_demand(peer, on_demand)
        logger.info(
            "%s: peer %s is dialled %s",
            self._node_id,
            node_id,
            "only when a message waits for it" if on_demand else "and kept connected again",
        )

    def remove_peer(self, node_id: str) -> None:
        """Forget the peer ``node_id``: drop its queue and close its connections.

        From now on it may not connect, and messages for it are dropped. Removing an
        unknown peer does nothing.
        """
        peer = self._peers.pop(node_id, None)
        if peer is None:
            return
        if self._peer_link is not None:
            self._peer_link.stop(peer)
        self.metrics.dropped_not_connected += len(peer.queue)
        peer.queue.clear()
        if self._inbound is not None:
            self._inbound.remove_peer(node_id)
        logger.info("%s: removed peer %s", self._node_id, node_id)

    async def close(self, *, flush_timeout: float | None = None) -> None:
        """Stop listening, flush, close every connection and end every task. Idempotent.

        Messages already taken for a peer that is connected, or being dialled, leave
        before the connections close: close waits until each such peer's queue and
        socket buffer have gone to the kernel, its connection ends, or ``flush_timeout``
        seconds pass (a quarter of a second if None). With nothing waiting it returns at
        once. What is still queued then is dropped and counted. When it returns, no task
        or socket of this transport is left.
        """
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        link = self._peer_link
        if link is not None:
            # Imported only when closing: a node runs for months without it.
            from ._flush import flush

            bound = _DEFAULT_FLUSH_TIMEOUT if flush_timeout is None else flush_timeout
            await flush(self._peers.values(), link.changed, bound)
        for peer in self._peers.values():
            self.metrics.dropped_not_connected += len(peer.queue)
            peer.queue.clear()
            peer.dialler = None
        if link is not None:
            await link.close()
        if self._inbound is not None:
            await self._inbound.close()
        if self._inbound is not None:  # it had started
            logger.info("%s: transport closed", self._node_id)

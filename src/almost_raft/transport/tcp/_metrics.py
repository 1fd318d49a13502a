"""Counters of the TCP transport, kept as plain ints so any exporter can read them."""

from __future__ import annotations

import dataclasses
import enum

from ._wire import FrameProblem

__all__ = ["ConnectFailure", "MessageCounts", "TcpMetrics"]


@dataclasses.dataclass(slots=True)
class MessageCounts:
    """How many messages of each kind. Plain counters; read them, never write them."""

    request_vote: int = 0
    request_vote_response: int = 0
    heartbeat: int = 0
    heartbeat_response: int = 0
    timeout_now: int = 0
    removal_notice: int = 0
    membership_query: int = 0

    @property
    def total(self) -> int:
        """All kinds together."""
        return (
            self.request_vote
            + self.request_vote_response
            + self.heartbeat
            + self.heartbeat_response
            + self.timeout_now
            + self.removal_notice
            + self.membership_query
        )

    def add(self, kind: str) -> None:
        """Count one message of ``kind`` (a name from :func:`._wire.message_kind`)."""
        setattr(self, kind, getattr(self, kind) + 1)


@dataclasses.dataclass(slots=True)
class TcpMetrics:
    """What a :class:`TcpTransport` has done since it was built. Plain ints, only growing.

    Attributes:
        sent: messages written to a peer's connection, by kind.
        received: messages decoded, checked and handed to the inbox, by kind.
        dropped_queue_full: oldest messages pushed out of a full peer queue.
        dropped_not_connected: queued messages thrown away unsent because a connection
            to their peer could not be made, the peer was removed, or the transport closed.
        dropped_unknown_peer: messages for a node id with no configured address.
        bad_oversized: frames longer than ``max_frame_bytes``.
        bad_undecodable: frames that are not one valid msgpack value.
        bad_unknown_kind: frames of a message kind this version does not know.
        bad_field: frames of a known kind with a missing, extra or invalid field.
        bad_impersonation: messages whose sender is not the node that opened the
            connection they came on.
        handshakes_refused: inbound connections refused at the handshake (another
            protocol version or cluster, an unknown node id, no handshake in time).
        bad_auth: connections, either way, whose peer did not prove it knows the
            cluster's shared secret.
        bad_tls: connections, either way, whose TLS handshake failed (no certificate
            signed by the cluster's CA, or not TLS at all).
        bad_identity: connections, either way, whose peer's certificate does not name
            the node id it claims (inbound) or that was dialled (outbound).
        accepted: inbound connections accepted (before their handshake).
        handshakes_accepted: inbound connections whose handshake was accepted.
        connects: outbound connections made.
        disconnects: outbound connections that ended, for whatever reason.
        unanswered: outbound connections given up because the peer answered nothing
            they carried for ``answer_timeout``.
        connect_refused: dials refused by the peer's host (nothing listens there).
        connect_timeouts: dials that got no answer within ``connect_timeout``.
        connect_errors: dials that failed otherwise (no route, unknown host...).
        dialler_errors: errors of the dialler itself, each logged with its traceback;
            the dialler starts again after ``backoff_max``.
    """

    sent: MessageCounts = dataclasses.field(default_factory=MessageCounts)
    received: MessageCounts = dataclasses.field(default_factory=MessageCounts)
    dropped_queue_full: int = 0
    dropped_not_connected: int = 0
    dropped_unknown_peer: int = 0
    bad_oversized: int = 0
    bad_undecodable: int = 0
    bad_unknown_kind: int = 0
    bad_field: int = 0
    bad_impersonation: int = 0
    handshakes_refused: int = 0
    bad_auth: int = 0
    bad_tls: int = 0
    bad_identity: int = 0
    accepted: int = 0
    handshakes_accepted: int = 0
    connects: int = 0
    disconnects: int = 0
    unanswered: int = 0
    connect_refused: int = 0
    connect_timeouts: int = 0
    connect_errors: int = 0
    dialler_errors: int = 0

    def count(self, event: FrameProblem | ConnectFailure) -> None:
        """Add one to the counter that ``event`` names."""
        setattr(self, event.value, getattr(self, event.value) + 1)


class ConnectFailure(enum.Enum):
    """Why a dial failed. Each value names its counter in :class:`TcpMetrics`."""

    #: The peer's host answered that nothing listens on the port: its process is gone.
    REFUSED = "connect_refused"
    #: No answer in time: the host, or the network to it, may be down or just slow.
    TIMEOUT = "connect_timeouts"
    #: Any other error: no route, unknown host name, out of file descriptors...
    OTHER = "connect_errors"

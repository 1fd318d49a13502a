"""The TCP transport's settings, checked once when the transport is built.

Each check raises :class:`ConfigError` naming the argument, the value and the fix, so a
wrong setting stops a node at start instead of failing on the first connection.
"""

from __future__ import annotations

import dataclasses
from typing import TypedDict

from ...core._config import ElectionConfig
from ...core._errors import ConfigError
from ._tls import TlsConfig
from ._wire import check_wire_id

__all__ = [
    "Address",
    "ElectionTimeouts",
    "TcpSettings",
    "check_address",
    "check_id",
    "check_int",
    "check_seconds",
    "timeouts_for_election",
]

Address = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class TcpSettings:
    """What both halves of a :class:`TcpTransport` need, already checked.

    The fields are the transport's arguments of the same names; ``secret`` is None when
    the cluster has no shared secret, ``tls`` None for plain TCP, ``answer_timeout``
    None for connections that are never given up for want of an answer, and
    ``min_retransmit_timeout`` None to leave the kernel's retransmission floor as it is.
    """

    cluster_id: str
    max_frame_bytes: int
    queue_size: int
    connect_timeout: float
    handshake_timeout: float
    write_timeout: float
    backoff_initial: float
    backoff_max: float
    send_buffer_bytes: int
    tls: TlsConfig | None
    secret: bytes | None
    answer_timeout: float | None = None
    min_retransmit_timeout: float | None = None


def check_id(field: str, value: object) -> None:
    """Raise ``ConfigError`` unless ``value`` is a node or cluster id the wire can carry."""
    try:
        check_wire_id(field, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(field, value, str(exc)) from None


def check_address(field: str, value: object, *, allow_port_zero: bool) -> Address:
    """Return ``value`` as ``(host, port)``, or raise ``ConfigError``."""
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


def check_int(field: str, value: object, *, minimum: int) -> None:
    """Raise ``ConfigError`` unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if type(value) is not int or value < minimum:
        raise ConfigError(field, value, f"must be an integer of at least {minimum}")


def check_seconds(field: str, value: object) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite, positive number of seconds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or value == float("inf")
    ):
        raise ConfigError(field, value, "must be a finite number of seconds greater than 0")


class ElectionTimeouts(TypedDict):
    """Keyword arguments of :class:`TcpTransport` that follow from an election's timing."""

    answer_timeout: float
    connect_timeout: float
    backoff_max: float


def timeouts_for_election(config: ElectionConfig) -> ElectionTimeouts:
    """The TCP transport's timeouts that follow from an election's timing.

    Returns ``answer_timeout``, ``connect_timeout`` and ``backoff_max`` for
    :class:`TcpTransport`: a connection that goes unanswered for about an election timeout
    is given up, and a peer that cannot be reached is dialled again at least about every
    two, so that after a partition heals a node rejoins within a few heartbeats however
    long it lasted. The lower bounds keep a busy machine's pauses (and a TLS handshake)
    from ending healthy connections when the election timeouts are tiny.
    """
    longest = config.election_timeout_range[1]
    redial = min(1.0, max(0.25, 2 * longest))
    return ElectionTimeouts(
        answer_timeout=max(0.2, longest), connect_timeout=redial, backoff_max=redial
    )

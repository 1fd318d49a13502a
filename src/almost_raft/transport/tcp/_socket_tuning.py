"""The kernel's TCP options on a peer connection: when it gives up, and how soon it resends.

An election message is small and rare: one segment in flight, rarely a second. TCP
recovers such a segment only by its retransmission timer, and Linux floors that timer at
200 ms, longer than a whole election timeout of 150 ms. A vote or the new leader's first
heartbeat that one lost packet holds back would cost the failover that much, and every
message behind it on the connection waits too. Linux 6.15 and later let a socket lower
the floor (``TCP_RTO_MIN_US``); the floor exists so that a receiver's delayed
acknowledgement (up to 200 ms, usually 40) is not taken for a loss, so each end also caps
the delay of its own acknowledgements (``TCP_DELACK_MAX_US``) well below the floor. The
timer is then the kernel's estimate, the smoothed round trip plus its variation, and no
less than ``min_retransmit_timeout``: by the kernel's formula (smoothed round trip plus
the larger of four deviations and the floor), about 80 ms on a steady 40 ms round trip
instead of 240. And the connection that dialled asks for linear
timeouts (``TCP_THIN_LINEAR_TIMEOUTS``, Linux 2.6.34 and later): while it has fewer than
four segments in flight, as an election's messages always are, its first six
retransmissions of a segment do not double the timer, so a second loss costs another
round trip rather than twice the first wait.

``TCP_USER_TIMEOUT`` (Linux) ends a connection whose sent data stays unacknowledged for
``answer_timeout``, so that after a partition heals the node redials instead of waiting
out TCP's exponential backoff.

Where the kernel lacks an option nothing is set and the connection works as before: the
option numbers are Linux's own, so nothing is tried elsewhere.
"""

from __future__ import annotations

import contextlib
import socket
import sys

from ._settings import TcpSettings

__all__ = ["RETRANSMIT_FLOOR_RANGE", "ack_delay_cap", "tune_received", "tune_sent"]

# linux/tcp.h (the last two 6.15 and later); the socket module of Python 3.11 names none.
_TCP_THIN_LINEAR_TIMEOUTS = 16
_TCP_RTO_MIN_US = 45
_TCP_DELACK_MAX_US = 46

_LINUX = sys.platform.startswith("linux")


#: What the kernel accepts for either option, in seconds (it counts in clock ticks).
RETRANSMIT_FLOOR_RANGE = (0.005, 0.2)


def ack_delay_cap(min_retransmit_timeout: float) -> float:
    """The longest each end delays an acknowledgement: a quarter of the floor, so that
    a delayed acknowledgement is not taken for a loss, and no less than the kernel
    accepts."""
    return max(RETRANSMIT_FLOOR_RANGE[0], min_retransmit_timeout / 4)


def tune_sent(sock: socket.socket, settings: TcpSettings) -> None:
    """Options of a connection this node dialled, which carries its messages."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    limit = settings.answer_timeout
    if limit is not None and option is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, round(limit * 1000)))
    floor = settings.min_retransmit_timeout
    _set_retransmission(sock, floor)
    if floor is not None and _LINUX:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_THIN_LINEAR_TIMEOUTS, 1)


def tune_received(sock: socket.socket, settings: TcpSettings) -> None:
    """Options of a connection a peer dialled: it acknowledges what the peer sends."""
    _set_retransmission(sock, settings.min_retransmit_timeout)


def _set_retransmission(sock: socket.socket, floor: float | None) -> None:
    if floor is None or not _LINUX:
        return
    for option, seconds in ((_TCP_RTO_MIN_US, floor), (_TCP_DELACK_MAX_US, ack_delay_cap(floor))):
        # EINVAL or ENOPROTOOPT from an older kernel; EBADF from a connection reset as
        # it was made, which then ends as any young connection does.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, round(seconds * 1e6)))

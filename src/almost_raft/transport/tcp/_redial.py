"""When the sending half gives a connection up, and how soon it dials again: pure policy.

The dialler task of :mod:`._peer_link` does the waiting and the I/O; every decision it
makes is one of the functions here, which take the facts (how long a connection lasted,
how many frames went each way) and return what to do. They read no clock.

Rules
-----
Rule 1 (the probe is not delayed). The first dial after an established connection broke
is the probe that tells a dead process (its host refuses) from a blip; it goes out at
once. A probe connection that dies young (a dying process's listen backlog can still
accept it) is probed again at once, a few times at most.

Rule 2 (no tight loops). A connection that ended at once, without a probe to make, is
redialled after a backoff that doubles with each failure in a row, up to a ceiling,
jittered so nodes that lost a peer together do not redial together.

Rule 3 (unanswered heartbeats end a connection). A heartbeat is answered by the peer
over its own connection to us. A connection that sent heartbeats and heard nothing back
for ``answer_timeout`` (what it sends after an answer is judged within two) is given up
and redialled: after a partition, an established connection would otherwise wait out
TCP's retransmission backoff, which doubles to many seconds, while a new connection gets
through within a round trip of the heal. A vote request does not arm the watch: a voter
in its leader lease holds or drops it without a word, and a healthy connection must not
be given up for that; what a partition does to it, the kernel's ``TCP_USER_TIMEOUT``
(the same limit, for data it sent that no one acknowledged) tells.

Rule 4 (a fresh SYN while the peer is unreachable). A dial that gets no answer is not
left to the kernel, which retransmits a SYN after one second, then three, then seven: a
new attempt starts every :func:`dial_spacing` (twice the measured connect time, at least
``MIN_DIAL_SPACING``) while the earlier ones go on, each for ``connect_timeout`` at most,
and the first to connect is kept. A lost SYN or refusal then costs one spacing, and after
a partition heals the peer is reached within one spacing, however long it lasted. A dial
that timed out is followed by the next at once: unlike a refusal it cannot loop tightly,
since it waited ``connect_timeout``.
"""

from __future__ import annotations

import dataclasses
import enum
import random

__all__ = [
    "ANSWERED_KINDS",
    "QUICK_PROBES",
    "AnswerWatch",
    "Redial",
    "Verdict",
    "MIN_DIAL_SPACING",
    "after_connection",
    "backoff_delay",
    "dial_spacing",
    "next_connect_estimate",
]

# The longest exponent the backoff computes, so a peer down for days cannot overflow it.
_MAX_BACKOFF_DOUBLINGS = 32

# How many times in a row a probe connection that died young is probed again at once.
QUICK_PROBES = 3

#: The shortest time between two attempts of one dial, in seconds: what a lost SYN costs
#: on a fast network, where the measured connect time is far below it.
MIN_DIAL_SPACING = 0.1

#: The weight of the newest connect time in the running estimate.
_CONNECT_GAIN = 0.25

#: The message kinds (``message_kind`` names) whose receiver always answers, on its own
#: connection: a heartbeat gets a heartbeat response. Not a vote request, which a voter
#: that still hears its leader leaves unanswered.
ANSWERED_KINDS = frozenset({"heartbeat"})


def backoff_delay(failures: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait before the next dial after ``failures`` failures in a row.

    Doubles from ``initial`` up to ``maximum``, then jittered to between half and all of
    that, so nodes that lost a peer together do not all redial at the same instant.
    """
    doublings = min(failures - 1, _MAX_BACKOFF_DOUBLINGS)
    ceiling = min(maximum, initial * 2.0**doublings)
    return ceiling * (0.5 + 0.5 * rng.random())


def dial_spacing(connect_estimate: float | None, connect_timeout: float) -> float:
    """Seconds between the attempts of one dial (Rule 4).

    Twice ``connect_estimate`` (the running estimate of how long a connect to this peer
    takes, None before the first), so that an attempt whose SYN is merely slow is not
    doubled at once, but at least ``MIN_DIAL_SPACING`` and at most ``connect_timeout``.
    """
    if connect_estimate is None:
        return min(connect_timeout, MIN_DIAL_SPACING)
    return min(connect_timeout, max(MIN_DIAL_SPACING, 2.0 * connect_estimate))


def next_connect_estimate(estimate: float | None, sample: float) -> float:
    """The running estimate of a peer's connect time after one took ``sample`` seconds.

    A moving average, not the largest seen: one connect slowed by a busy moment must not
    space the attempts out for good, and a spacing a little short costs only a SYN.
    """
    if estimate is None:
        return sample
    return estimate + _CONNECT_GAIN * (sample - estimate)


@dataclasses.dataclass(frozen=True, slots=True)
class Redial:
    """What the dialler does after a connection ended.

    Attributes:
        failures: failures in a row, for the next :func:`backoff_delay`.
        quick_probes: young probe connections in a row that were probed again at once.
        backoff: wait ``backoff_delay(failures, ...)`` before dialling; else dial at once.
    """

    failures: int
    quick_probes: int
    backoff: bool


def after_connection(
    failures: int,
    quick_probes: int,
    *,
    lasted: float,
    probe: bool,
    backoff_initial: float,
    backoff_max: float,
) -> Redial:
    """Decide how to redial after a connection that lasted ``lasted`` seconds ended.

    ``probe`` says whether that connection was itself a probe (it was dialled right after
    an established connection broke). A connection that lasted ``backoff_max`` proves the
    peer healthy and resets the failures; one that ended within twice ``backoff_initial``
    is young: it waits a backoff unless it was a probe with quick probes left.
    """
    young = lasted < 2 * backoff_initial
    if probe and young and quick_probes < QUICK_PROBES:
        # Most likely the backlog of a listener whose process is being killed.
        return Redial(failures, quick_probes + 1, backoff=False)
    failures = 0 if lasted >= backoff_max else failures + 1
    # Anything between young and healthy is redialled at once: that redial is the probe
    # that tells a dead leader from a blip, and it must not wait a backoff.
    return Redial(failures, 0, backoff=bool(failures) and young)


class Verdict(enum.Enum):
    """What a look at a connection one ``answer_timeout`` after it asked finds."""

    #: Nothing came from the peer since: give the connection up.
    UNANSWERED = "unanswered"
    #: The peer answered, but more was asked since: look again one limit from now.
    AGAIN = "again"
    #: The peer answered and nothing more was asked: no look is due.
    ANSWERED = "answered"


class AnswerWatch:
    """Whether what a connection asks of its peer is answered within ``answer_timeout``.

    The first asking write while no look is due arms the watch (:meth:`arm`) and the
    caller schedules one look (:meth:`look`) a limit later; a connection that asks nothing,
    such as a follower's to its leader, costs no timer at all. ``asked`` counts the frames
    of :data:`ANSWERED_KINDS` written on the connection so far, ``heard`` the frames
    received from the peer on any connection.
    """

    __slots__ = ("_asked", "_heard", "armed")

    def __init__(self) -> None:
        self.armed = False
        self._asked = 0
        self._heard = 0

    def arm(self, asked: int, heard: int) -> bool:
        """An asking write happened; True if a look must now be scheduled."""
        if self.armed:
            return False
        self.armed = True
        self._asked = asked
        self._heard = heard
        return True

    def look(self, asked: int, heard: int) -> Verdict:
        """One limit has passed since the watch was armed (or last said AGAIN)."""
        if heard == self._heard:
            self.armed = False
            return Verdict.UNANSWERED
        if asked != self._asked:
            # What was asked since the answer may be unanswered: judge it from now on.
            self._asked = asked
            self._heard = heard
            return Verdict.AGAIN
        self.armed = False
        return Verdict.ANSWERED

"""Exclusive leadership: the leader's lease and the followers' promise (thesis 6.4).

A follower that accepts a heartbeat promises to neither vote nor campaign for one
``election_timeout`` after it received it. A leader that hears a majority answer a
heartbeat round therefore knows that no other node can win an election until the
promises made to that round run out. Measured on the leader's own clock from when it
*sent* the round (no later than any follower received it), and shortened by the drift
bound, that gives its lease::

    lease_until = sent + election_timeout * (1 - max_clock_drift) - lease_margin

``max_clock_drift`` bounds how much slower one node's clock may run than another's: over
any stretch of real time in which one clock advances by ``d``, every other clock advances
by at least ``d * (1 - max_clock_drift)``. The leader counts itself as having promised at
the send time; it does, since a leader does not vote for others while it leads, and the
promise is kept after it steps down.

Every shortcut that lets a node vote before its promise ran out keeps it by other means:

- A vote given early (on evidence that the leader died, or by a node that restarted and
  may have promised just before it crashed) carries the rest of the promise,
  ``promise_left``. The winner leads at once but starts exclusive work only once the
  largest such remainder among its voters has passed, stretched by ``1 / (1 -
  max_clock_drift)`` to cover a voter whose clock runs slower than the winner's.
- A hand-over (TimeoutNow) waives only the promises made to the leader that hands over,
  and that leader ends its lease before it sends the TimeoutNow. Promises made to any
  earlier leader still count, which is why a promise remembers its term and keeps the
  older promises apart.

This module is the arithmetic alone, free of the rest of the election.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection

from ._quorum import quorum_heard_since

__all__ = ["Lease", "LeaseKeeper", "Promise", "stretched"]


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A leader's exclusive leadership of ``term``, in the core's time.

    While ``start <= now < until`` no other node can lead any term, given the configured
    drift bound: work that must never run on two nodes at once may run. ``until`` is
    renewed with every heartbeat round a majority answers; a lease whose ``until`` is not
    later than the current time is over (that is how an ended lease is reported).
    ``start`` is later than the election when a voter gave its vote early, with part of
    its promise to an earlier leader left.
    """

    term: int
    start: float
    until: float

    def exclusive_at(self, now: float) -> bool:
        """Whether the lease makes this node exclusive at ``now``."""
        return self.start <= now < self.until


def stretched(remainder: float, max_clock_drift: float) -> float:
    """How long to wait on this clock for ``remainder`` seconds of another node's clock.

    The other clock may run slower by up to ``max_clock_drift``, so its ``remainder``
    takes up to ``remainder / (1 - max_clock_drift)`` seconds here.
    """
    return remainder / (1 - max_clock_drift) if remainder > 0 else 0.0


class Promise:
    """What this node promised by accepting heartbeats (or may have, before a restart).

    ``term`` and ``until`` are the latest promise; ``older_until`` the end of every
    promise made to a leader of an earlier term, or before a restart. Times only grow.
    """

    __slots__ = ("older_until", "term", "until")

    def __init__(self) -> None:
        self.term = -1
        self.until = -math.inf
        self.older_until = -math.inf

    def restarted(self, now: float, duration: float) -> None:
        """This node starts with a term it may have promised in, to a leader unknown."""
        self.older_until = max(self.older_until, now + duration)

    def made(self, term: int, now: float, duration: float) -> None:
        """A heartbeat of ``term`` was accepted at ``now`` (or, on the leader, sent)."""
        if term != self.term:
            self.older_until = max(self.older_until, self.until)
            self.term = term
        self.until = max(self.until, now + duration)

    def left(self, now: float, *, handed_over_by: int | None = None) -> float:
        """The seconds of promise left at ``now``; 0 once every promise has run out.

        ``handed_over_by`` is the term of a leader that handed leadership over: the
        promise made to it is waived, since it ended its lease before it did so.
        """
        until = self.older_until
        if handed_over_by != self.term:
            until = max(until, self.until)
        return max(0.0, until - now)


class LeaseKeeper:
    """A leader's record of its heartbeat rounds and the lease they earned.

    Each round gets a number, echoed by the followers' answers, so an answer is credited
    with the time its round was *sent*, however late it arrives. Only rounds that can
    still extend the lease are remembered.
    """

    __slots__ = (
        "_above",
        "_acked",
        "_basis",
        "_needed",
        "_round",
        "_sent",
        "stale",
        "start",
        "term",
        "voters",
    )

    def __init__(self, term: int, start: float) -> None:
        self.term = term
        # When exclusive work may begin: later than now after early votes.
        self.start = start
        self._round = 0
        self._sent: dict[int, float] = {}
        # Per node, the send time of the latest round it answered.
        self._acked: dict[str, float] = {}
        # Whether an answer, a round or a change of members may have moved the lease
        # since it was last computed: most of a leader's inputs change nothing here.
        self.stale = True
        # The send time of the round the last computed lease counts from: an answer that
        # credits a node with a time no later than this cannot move it.
        self._basis = -math.inf
        # How many nodes are credited with a time later than the basis (at least as many
        # as there are such voters), and how many a majority of the voters is: the lease
        # can move only once the first reaches the second, so a steady round computes it
        # once, at the answer that completes a majority, not at the tick and at each
        # answer before that one.
        self._above = 0
        self._needed = 1
        # What the caller last computed the lease over (it compares by identity).
        self.voters: object = None

    @property
    def current_round(self) -> int:
        """The number of the latest round sent."""
        return self._round

    def send_round(self, node_id: str, now: float, horizon: float) -> int:
        """A new round leaves at ``now``; return its number.

        The leader answers for itself at once. Rounds sent more than ``horizon`` ago can
        no longer extend the lease and are forgotten.
        """
        self._round += 1
        self._sent[self._round] = now
        self.answered(node_id, self._round)
        for old in [r for r, sent in self._sent.items() if sent <= now - horizon]:
            del self._sent[old]
        return self._round

    def answered(self, node_id: str, round_number: int) -> None:
        """``node_id`` answered round ``round_number`` (an unknown round counts nothing)."""
        sent = self._sent.get(round_number)
        if sent is None:
            return
        acked = self._acked
        before = acked.get(node_id, -math.inf)
        if sent > before:
            acked[node_id] = sent
            if before <= self._basis < sent:
                # A majority's latest time moves only once a majority is credited with
                # a time later than it.
                self._above += 1
                if self._above >= self._needed:
                    self.stale = True

    def until(self, voters: Collection[str], duration: float) -> float:
        """The end of the lease: ``duration`` after the latest round a majority answered."""
        return quorum_heard_since(voters, self._acked) + duration

    def lease(self, voters: Collection[str], duration: float) -> Lease:
        """The lease as it stands; it is no longer :attr:`stale`."""
        self.stale = False
        acked = self._acked
        basis = self._basis = quorum_heard_since(voters, acked)
        self._needed = len(voters) // 2 + 1
        self._above = sum(1 for voter in voters if acked.get(voter, -math.inf) > basis)
        return Lease(self.term, self.start, basis + duration)

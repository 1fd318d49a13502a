"""Round trips to each peer and the time a save takes, measured from what the core sees.

The core already knows when it sends a heartbeat or a vote request and when the answer
arrives (time is an input), so it can time the round trip with no I/O of its own. The
estimates set the spacing of crash-failover turns and of a candidate's retries while the
leader is known down (:mod:`._leader_down`): a turn must outlast one pre-vote round and
one vote round, or the next in line starts while the first one's votes are in flight.

Theory of operation
-------------------
Each peer's round trip is smoothed as TCP smooths its own (RFC 6298): a mean and a mean
deviation, and a *high* estimate of mean plus four deviations, which few round trips
exceed.

- Vote requests are matched exactly: a candidate asks each peer once per campaign, and
  the term checks have already dropped answers to older campaigns. A vote answer also
  includes the voter's save of its vote, as every vote round does.
- Heartbeats carry no id, so their answers are matched first in, first out: a peer
  answers each heartbeat in order over one connection. A heartbeat whose answer was lost
  would shift every later match by one interval (an overestimate), so a send older than
  ``max_age`` is forgotten rather than matched.
- Followers send nothing that is answered, so they cannot time a round trip. A leader
  therefore puts its estimate of a majority's round trip in every heartbeat
  (:attr:`HeartBeat.round_trip`), and a follower uses the latest it heard.
- The runtime reports how long each save of the term and vote took
  (:meth:`RoundTrips.note_save`).

Estimates only ever stretch or shrink waits, between a floor and a ceiling: safety never
depends on them.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Collection, Iterable

__all__ = ["RoundTrips", "Smoothed"]

# Heartbeat sends kept per peer for matching; more than this in flight is a dead link.
_MAX_IN_FLIGHT = 8


class Smoothed:
    """A mean and mean deviation of samples, smoothed as RFC 6298 smooths TCP's RTT."""

    __slots__ = ("deviation", "mean", "updated")

    def __init__(self) -> None:
        self.mean = math.nan
        self.deviation = 0.0
        self.updated = -math.inf

    def add(self, sample: float, now: float) -> None:
        """Take one sample (seconds) measured at ``now``."""
        if math.isnan(self.mean):
            self.mean = sample
            self.deviation = sample / 2
        else:
            self.deviation += (abs(self.mean - sample) - self.deviation) / 4
            self.mean += (sample - self.mean) / 8
        self.updated = now

    @property
    def high(self) -> float:
        """Mean plus four deviations: what few samples exceed; NaN before any sample."""
        return self.mean + 4 * self.deviation


class RoundTrips:
    """One node's round-trip estimate to each peer, and its save time.

    Args:
        max_age: the longest round trip worth measuring, in seconds; a heartbeat sent
            longer ago than this is no longer matched with an answer, and an estimate
            not updated for ``stale_after`` seconds is not used.
        stale_after: how long an estimate counts after its last sample.
    """

    __slots__ = (
        "_advertised",
        "_asked",
        "_heartbeats",
        "_max_age",
        "_peers",
        "_save",
        "_stale_after",
    )

    def __init__(self, max_age: float, stale_after: float) -> None:
        self._max_age = max_age
        self._stale_after = stale_after
        self._peers: dict[str, Smoothed] = {}
        self._save = Smoothed()
        # Heartbeat send times per peer, not yet matched with an answer, oldest first.
        self._heartbeats: dict[str, collections.deque[float]] = {}
        # When the current campaign asked each peer for its (pre-)vote.
        self._asked: dict[str, float] = {}
        # The latest leader's estimate, and when it arrived.
        self._advertised = (0.0, -math.inf)

    # ------------------------------------------------------------------ samples

    def heartbeats_sent(self, peers: Iterable[str], now: float) -> None:
        """A heartbeat left for each of ``peers`` at ``now``."""
        heartbeats = self._heartbeats
        for peer in peers:
            sent = heartbeats.get(peer)
            if sent is None:
                sent = heartbeats[peer] = collections.deque(maxlen=_MAX_IN_FLIGHT)
            sent.append(now)

    def heartbeat_answered(self, peer: str, now: float) -> None:
        """``peer`` answered a heartbeat at ``now``: match it with the oldest one sent."""
        sent = self._heartbeats.get(peer)
        while sent and now - sent[0] > self._max_age:
            sent.popleft()
        if sent:
            seconds = now - sent.popleft()
            # _sample(), inline: a leader times every answer.
            estimate = self._peers.get(peer)
            if estimate is None:
                estimate = self._peers[peer] = Smoothed()
            if seconds < 0.0:
                seconds = 0.0
            mean = estimate.mean
            if mean == mean:
                # Smoothed.add(), inline for a leader's every answer (NaN: no sample yet).
                error = mean - seconds
                estimate.deviation += ((error if error >= 0.0 else -error) - estimate.deviation) / 4
                estimate.mean = mean + (seconds - mean) / 8
                estimate.updated = now
            else:
                estimate.add(seconds, now)

    def vote_asked(self, peer: str, now: float) -> None:
        """A (pre-)vote request left for ``peer`` at ``now``; it replaces any earlier one."""
        self._asked[peer] = now

    def vote_untimed(self, peer: str) -> None:
        """A (pre-)vote request left for ``peer`` whose answer is not a round trip.

        A request sent before the voter can have evidence of a crash is held by it until
        it has (see ``_leader_down``), so its answer's delay says nothing about the
        network; any earlier request's time is forgotten too.
        """
        self._asked.pop(peer, None)

    def vote_answered(self, peer: str, now: float) -> None:
        """``peer`` answered, at ``now``, this campaign's latest request to it.

        The caller has checked that the answer belongs to the campaign under way; only
        the first answer to each request is timed.
        """
        asked_at = self._asked.pop(peer, None)
        if asked_at is not None and now - asked_at <= self._max_age:
            self._sample(peer, now - asked_at, now)

    def forget_heartbeats(self) -> None:
        """Leadership ended or began: no heartbeat answer can match an earlier send."""
        self._heartbeats.clear()

    def note_save(self, seconds: float, now: float) -> None:
        """A save of the term and vote took ``seconds``, ending at ``now``."""
        if math.isfinite(seconds) and seconds >= 0:
            self._save.add(seconds, now)

    def heard_from_leader(self, round_trip: float, now: float) -> None:
        """The leader's heartbeat said a majority's round trip is ``round_trip`` seconds."""
        if math.isfinite(round_trip) and round_trip > 0:
            self._advertised = (round_trip, now)

    def _sample(self, peer: str, seconds: float, now: float) -> None:
        estimate = self._peers.get(peer)
        if estimate is None:
            estimate = self._peers[peer] = Smoothed()
        estimate.add(max(seconds, 0.0), now)

    # ------------------------------------------------------------------ estimates

    def peer_high(self, peer: str, now: float) -> float | None:
        """The high estimate of the round trip to ``peer``, or None if none is fresh."""
        estimate = self._peers.get(peer)
        if estimate is None or now - estimate.updated > self._stale_after:
            return None
        return estimate.high

    def majority(self, peers: Collection[str], now: float) -> float | None:
        """How long until a majority of ``peers`` and this node have answered a request.

        The slowest of the fastest answers a majority needs, by each peer's high estimate;
        None while fewer peers than that have a fresh estimate.
        """
        needed = (len(peers) + 1) // 2
        if needed == 0:
            return None
        # peer_high() inline: a leader asks this every round.
        estimates = self._peers
        stale_after = self._stale_after
        highs = []
        for peer in peers:
            estimate = estimates.get(peer)
            if estimate is not None and now - estimate.updated <= stale_after:
                highs.append(estimate.mean + 4 * estimate.deviation)
        if len(highs) < needed:
            return None
        highs.sort()
        return highs[needed - 1]

    def round_trip(self, peers: Collection[str], now: float) -> float | None:
        """A majority's round trip: measured here if fresh, else the leader's word."""
        own = self.majority(peers, now)
        advertised, heard_at = self._advertised
        if now - heard_at <= self._stale_after and (own is None or advertised > own):
            # A leader hears every follower, so its figure is the cluster's; it wins over
            # a smaller one of this node's, which may come from fewer or nearer peers.
            return advertised
        return own

    def save_time(self, now: float) -> float:
        """The high estimate of one save, in seconds; 0 before any or when stale."""
        if now - self._save.updated > self._stale_after:
            return 0.0
        return self._save.high

    def campaign_round(self, peers: Collection[str], now: float, *, vote: bool) -> float | None:
        """How long the answers of one round take: a round trip, and a save for votes."""
        round_trip = self.round_trip(peers, now)
        if round_trip is None:
            return None
        return round_trip + (self.save_time(now) if vote else 0.0)

    def election_round(self, peers: Collection[str], now: float) -> float | None:
        """How long one pre-vote round and one vote round take, or None if not known.

        Two round trips to a majority, and a save: the voters save their votes before
        they answer (the save is counted once, as this node's own save runs alongside).
        """
        round_trip = self.round_trip(peers, now)
        if round_trip is None:
            return None
        return 2 * round_trip + self.save_time(now)

"""Election timing and membership settings, validated when built."""

from __future__ import annotations

import dataclasses
import math

from ._errors import ConfigError

__all__ = ["ElectionConfig"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ElectionConfig:
    """How fast an election reacts, and how many nodes it needs.

    All durations are in seconds. Every field is checked when the object is built; a bad
    value raises :class:`ConfigError` naming the field and how to fix it.

    Attributes:
        election_timeout: the shortest time a follower waits without hearing from a
            leader before it starts an election. Each wait is drawn afresh and uniformly
            from ``[election_timeout, election_timeout_max)``.
        election_timeout_max: the upper end of that range; ``None`` means twice
            ``election_timeout``. A wider range makes split votes rarer and failover slower.
        heartbeat_interval: how often a leader tells followers it is alive. It must be
            well under ``election_timeout`` (at most half) or healthy leaders get deposed.
        message_timeout: the longest one send to one peer may take before it is
            abandoned, so a slow or dead peer never delays messages to the others.
        min_peers: no election starts until this many peers (this node excluded) are
            known. Guards a cluster that is still being assembled: it applies to the
            starting members only, and once a leader has made a configuration, that
            configuration alone decides (a removal may leave fewer peers).
        max_nodes: the largest cluster size, this node included; adding a further peer
            is refused with a log line. ``None`` means no limit.
        pre_vote: ask whether an election could be won before raising the term, so a
            node returning from a partition does not depose a healthy leader (thesis 9.6).
        check_quorum: a leader that has not heard from a majority for an election timeout
            steps down, and a node that heard from a leader within ``election_timeout``
            refuses to vote for anyone else (thesis 6.2). With ``pre_vote`` the leader's
            window is one majority round trip longer, as it measures it, and never
            longer than ``election_timeout_max``: one lost packet, which TCP resends
            only after the next heartbeat, then does not depose a healthy leader, and a
            successor still needs its voters' timeouts, a pre-vote round and a vote
            round before it leads.
        leader_down_delay: when the transport reports that the leader's process is gone
            (its host refused the connection), the followers campaign in turn, this far
            apart, instead of after a full election timeout; the first starts at once.
            Until a leader is known again, a candidate's retries wait between one and two
            of these instead of a full election timeout, while a follower that grants a
            candidate its (pre-)vote leaves it a full election timeout. ``None`` (the
            default) measures it: one pre-vote round and one vote round, which is two
            round trips to a majority and a save, as the core measures them, never less
            than :attr:`leader_down_step` nor more than :attr:`leader_down_ceiling`. A
            number fixes it, in seconds; it should exceed one pre-vote and vote round
            trip, so that the first in line wins before the next starts. 0 turns this off;
            silent failures always fall back to the election timeout.
        max_clock_drift: how much slower, as a fraction, one node's clock may run than
            another's: while one clock advances by ``d`` seconds, every other advances by
            at least ``d * (1 - max_clock_drift)``. The leader's lease is shortened by
            this factor (see :attr:`lease_duration`). The default, 0.01, is twenty times
            the largest rate NTP slews a clock by (500 ppm); from 0 to below 0.5.
    """

    election_timeout: float = 1.0
    election_timeout_max: float | None = None
    heartbeat_interval: float = 0.1
    message_timeout: float = 0.5
    min_peers: int = 0
    max_nodes: int | None = None
    pre_vote: bool = True
    check_quorum: bool = True
    leader_down_delay: float | None = None
    max_clock_drift: float = 0.01

    def __post_init__(self) -> None:
        _positive("election_timeout", self.election_timeout)
        _positive("heartbeat_interval", self.heartbeat_interval)
        _positive("message_timeout", self.message_timeout)
        if self.election_timeout_max is not None:
            _positive("election_timeout_max", self.election_timeout_max)
            if self.election_timeout_max <= self.election_timeout:
                raise ConfigError(
                    "election_timeout_max",
                    self.election_timeout_max,
                    f"must be greater than election_timeout ({self.election_timeout}); "
                    "leave it unset for twice election_timeout",
                )
        if self.heartbeat_interval * 2 > self.election_timeout:
            raise ConfigError(
                "heartbeat_interval",
                self.heartbeat_interval,
                f"must be at most half of election_timeout ({self.election_timeout}), "
                "or followers time out between heartbeats; a tenth is typical",
            )
        _integer("min_peers", self.min_peers, minimum=0)
        if self.max_nodes is not None:
            _integer("max_nodes", self.max_nodes, minimum=1)
            if self.min_peers + 1 > self.max_nodes:
                raise ConfigError(
                    "max_nodes",
                    self.max_nodes,
                    f"must be at least min_peers + 1 ({self.min_peers + 1}), "
                    "or no election could ever start",
                )
        delay = self.leader_down_delay
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay < self.election_timeout
        ):
            raise ConfigError(
                "leader_down_delay",
                delay,
                f"must be a number of seconds from 0 (off) to below election_timeout "
                f"({self.election_timeout}); a few round trips, such as 0.03, is typical",
            )
        drift = self.max_clock_drift
        if isinstance(drift, bool) or not isinstance(drift, int | float) or not 0 <= drift < 0.5:
            raise ConfigError(
                "max_clock_drift",
                drift,
                "must be a fraction from 0 to below 0.5; 0.01 (1%) is a safe bound for "
                "clocks kept by NTP",
            )
        for name in ("pre_vote", "check_quorum"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(name, value, "must be True or False")

    @property
    def leader_down_step(self) -> float:
        """The fixed ``leader_down_delay``, or, when it is measured, its floor: 30 ms, or a
        fifth of ``election_timeout`` if that is less (seconds; see the class docstring)."""
        if self.leader_down_delay is None:
            return min(0.03, self.election_timeout / 5)
        return self.leader_down_delay

    @property
    def leader_down_ceiling(self) -> float:
        """The most a measured ``leader_down_delay`` can be: two thirds of
        ``election_timeout``, so that turns stay faster than waiting the timeout out."""
        return self.election_timeout * 2 / 3

    def leader_down_spacing(self, election_round: float | None) -> float:
        """The ``leader_down_delay`` in force, given the measured ``election_round``.

        ``election_round`` is how long one pre-vote round and one vote round take, in
        seconds, or None while nothing is measured. A fixed ``leader_down_delay`` ignores
        it; otherwise it is kept between :attr:`leader_down_step` and
        :attr:`leader_down_ceiling`.
        """
        floor = self.leader_down_step
        if self.leader_down_delay is not None or election_round is None:
            return floor
        return min(self.leader_down_ceiling, max(floor, election_round))

    @property
    def lease_margin(self) -> float:
        """Seconds a lease ends early, for the work it covers to be stopped in time.

        A twentieth of ``election_timeout``, at most 50 ms.
        """
        return min(0.05, self.election_timeout / 20)

    @property
    def lease_duration(self) -> float:
        """How long a lease lasts after the heartbeat round a majority answered was sent.

        ``election_timeout * (1 - max_clock_drift) - lease_margin`` (thesis 6.4): the
        followers' promise, seen through the slowest clock the drift bound allows, less the
        margin.
        """
        return self.election_timeout * (1 - self.max_clock_drift) - self.lease_margin

    @property
    def election_timeout_range(self) -> tuple[float, float]:
        """The half-open range ``[low, high)`` election timeouts are drawn from."""
        high = self.election_timeout_max
        return (self.election_timeout, 2 * self.election_timeout if high is None else high)

    @classmethod
    def from_milliseconds(
        cls,
        *,
        election_timeout: int,
        heartbeat_interval: int,
        message_timeout: int,
        min_peers: int = 0,
        max_nodes: int | None = None,
    ) -> ElectionConfig:
        """Build a config from integer milliseconds, as the Rust crate takes them."""
        for name, value in (
            ("election_timeout", election_timeout),
            ("heartbeat_interval", heartbeat_interval),
            ("message_timeout", message_timeout),
        ):
            _integer(name, value, minimum=1)
        return cls(
            election_timeout=election_timeout / 1000,
            heartbeat_interval=heartbeat_interval / 1000,
            message_timeout=message_timeout / 1000,
            min_peers=min_peers,
            max_nodes=max_nodes,
        )


def _positive(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(name, value, "must be a finite number of seconds greater than 0")


def _integer(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, value, f"must be an integer of at least {minimum}")

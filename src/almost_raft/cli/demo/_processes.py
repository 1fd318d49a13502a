"""``almost-raft demo``: a cluster of real processes that elects a leader and fails over.

Each node is an ``almost-raft run`` process on 127.0.0.1, talking TCP to the others and
keeping its term and vote in a state file. The demo SIGKILLs the leader several times,
restarts each killed node so it rejoins, and prints a timeline and a table of failover
times.

Failover is measured from the nodes' own JSON logs rather than by polling: every
leadership change a node sees is a log line stamped with ``time.monotonic()``, the same
clock in every process on the machine. A failover lasts from the instant just before the
SIGKILL to the moment the last live node learned the new leader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from ...node._process_cluster import ClusterTimings, LeaderEvent, ProcessCluster
from ._report import Failover, Timeline, print_summary

__all__ = ["ProcessDemoOptions", "run_process_demo"]

DEMO_TIMINGS = ClusterTimings(
    election_timeout_ms=150,
    election_timeout_max_ms=300,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)

_POLL_INTERVAL = 0.005


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessDemoOptions:
    """What the demo does.

    Attributes:
        nodes: how many processes.
        kills: how many times the leader is killed.
        steady_time: seconds the cluster runs undisturbed before each kill.
        deadline: seconds any one step (an election, a rejoin) may take before the demo
            gives up with ``TimeoutError``.
    """

    nodes: int = 5
    kills: int = 4
    steady_time: float = 0.5
    deadline: float = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Agreement:
    leader: str
    term: int
    #: When the last live node learned this leader (``time.monotonic()``).
    at: float


class _Views:
    """What each live node last logged about the leader, read from the logs as they grow."""

    def __init__(self, cluster: ProcessCluster, timeline: Timeline) -> None:
        self._cluster = cluster
        self._timeline = timeline
        self.latest: dict[str, LeaderEvent] = {}
        #: When each leader first logged its own win, by (leader, term).
        self.won_at: dict[tuple[str, int], float] = {}
        self.reference: float | None = None

    def forget(self, node: str) -> None:
        """Drop ``node``'s view (its process is gone; a restart logs a new one)."""
        self.latest.pop(node, None)

    def pump(self) -> None:
        for event in self._cluster.leader_events():
            previous = self.latest.get(event.node)
            self.latest[event.node] = event
            since = ""
            if self.reference is not None:
                since = f" (+{(event.monotonic - self.reference) * 1000:.0f} ms)"
            if event.is_self:
                self.won_at.setdefault((event.node, event.term), event.monotonic)
                self._timeline.say(
                    f"  {event.node} won the election of term {event.term}{since}",
                    at=event.monotonic,
                )
            elif event.leader is None and previous is not None and previous.leader is not None:
                self._timeline.say(
                    f"  {event.node} lost contact with leader {previous.leader}{since}",
                    at=event.monotonic,
                )

    def agreed(self, above_term: int) -> _Agreement | None:
        live = self._cluster.live()
        views = [self.latest.get(node) for node in live]
        if not views or any(view is None for view in views):
            return None
        known = {(view.leader, view.term) for view in views if view is not None}
        if len(known) != 1:
            return None
        ((leader, term),) = known
        if leader is None or leader not in live or term <= above_term:
            return None
        return _Agreement(leader, term, max(view.monotonic for view in views if view is not None))

    def wait_for_agreement(self, deadline: float, above_term: int = -1) -> _Agreement:
        end = time.monotonic() + deadline
        while True:
            self.pump()
            found = self.agreed(above_term)
            if found is not None:
                return found
            if time.monotonic() > end:
                raise TimeoutError(
                    f"the nodes did not agree on a leader within {deadline:.0f}s\n"
                    f"{self._cluster.describe()}"
                )
            time.sleep(_POLL_INTERVAL)

    def idle(self, seconds: float) -> None:
        """Keep printing what the nodes log for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump()
            time.sleep(_POLL_INTERVAL)


def run_process_demo(options: ProcessDemoOptions, out: TextIO | None = None) -> list[Failover]:
    """Run the multi-process demo, printing its timeline to ``out``; return the failovers.

    Every process it starts is ended before it returns or raises, also on Ctrl-C (and on
    SIGTERM when run from the main thread).

    Raises:
        TimeoutError: a step took longer than ``options.deadline``; the message describes
            each node and the end of its log.
    """
    out = sys.stdout if out is None else out
    timeline = Timeline(out)
    t = DEMO_TIMINGS
    cluster = ProcessCluster(options.nodes, timings=t)
    views = _Views(cluster, timeline)
    failovers: list[Failover] = []
    rejoins: list[float] = []
    with _sigterm_as_interrupt():
        try:
            cluster.start()
            timeline.say(
                f"started {options.nodes} processes on 127.0.0.1 over TCP, state files in "
                f"{cluster.directory}; election timeout {t.election_timeout_ms}-"
                f"{t.election_timeout_max_ms} ms, heartbeat {t.heartbeat_interval_ms} ms"
            )
            timeline.say(
                "  " + ", ".join(f"{node} pid {cluster.pid(node)}" for node in cluster.ids)
            )
            first = views.wait_for_agreement(options.deadline)
            timeline.say(
                f"all {options.nodes} nodes agree: {first.leader} leads term {first.term}",
                at=first.at,
            )
            for _ in range(options.kills):
                views.idle(options.steady_time)
                old = views.wait_for_agreement(options.deadline)
                failovers.append(_kill_leader(cluster, views, timeline, old, options))
                rejoins.append(_restart(cluster, views, timeline, old.leader, options))
            if options.kills:
                final = views.wait_for_agreement(options.deadline)
                terms = ", ".join(
                    f"{node} {(cluster.state(node) or {}).get('term')}" for node in cluster.ids
                )
                timeline.say(f"{final.leader} leads term {final.term}; terms on disk: {terms}")
        finally:
            cluster.close()
    print_summary(failovers, out)
    if rejoins:
        print(
            f"restarted nodes rejoined as followers after: min {min(rejoins) * 1000:.0f} ms, "
            f"median {statistics.median(rejoins) * 1000:.0f} ms, "
            f"max {max(rejoins) * 1000:.0f} ms (process start included)",
            file=out,
        )
    return failovers


def _kill_leader(
    cluster: ProcessCluster,
    views: _Views,
    timeline: Timeline,
    old: _Agreement,
    options: ProcessDemoOptions,
) -> Failover:
    pid = cluster.pid(old.leader)
    killed_at = cluster.kill(old.leader)
    views.forget(old.leader)
    views.reference = killed_at
    timeline.say(f"SIGKILL leader {old.leader} (pid {pid}, term {old.term})", at=killed_at)
    new = views.wait_for_agreement(options.deadline, above_term=old.term)
    elected_at = views.won_at.get((new.leader, new.term), new.at)
    failover = Failover(
        old.leader, old.term, new.leader, new.term, elected_at - killed_at, new.at - killed_at
    )
    timeline.say(
        f"all {len(cluster.live())} live nodes agree: {new.leader} leads term {new.term}; "
        f"failover {failover.agreed_after * 1000:.0f} ms",
        at=new.at,
    )
    return failover


def _restart(
    cluster: ProcessCluster,
    views: _Views,
    timeline: Timeline,
    node: str,
    options: ProcessDemoOptions,
) -> float:
    """Restart ``node`` and wait until it follows the leader; return how long that took."""
    leader = views.wait_for_agreement(options.deadline)
    term_on_disk = (cluster.state(node) or {}).get("term")
    started_at = time.monotonic()
    cluster.restart(node)
    views.reference = started_at
    timeline.say(
        f"restarted {node} (pid {cluster.pid(node)}); its state file says term {term_on_disk}"
    )
    joined = views.wait_for_agreement(options.deadline)
    if (joined.leader, joined.term) == (leader.leader, leader.term):
        timeline.say(
            f"{node} rejoined as a follower of {joined.leader}; term {joined.term} unchanged",
            at=joined.at,
        )
    else:
        timeline.say(
            f"{node} rejoined; the cluster now agrees on {joined.leader}, term {joined.term}",
            at=joined.at,
        )
    views.reference = None
    return joined.at - started_at


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so the demo's cleanup runs for it too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

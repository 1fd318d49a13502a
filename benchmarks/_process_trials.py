"""Failover trials against real processes, timed from their logs.

One trial: wait until every node agrees on a leader, wait a little more (so the crash
falls at a random moment of the heartbeat interval and every connection has been up a
while), signal the leader, and follow the other nodes' JSON logs until they all name the
same new leader in a newer term. Every time is the nodes' own ``time.monotonic()``
compared with the moment this process sent the signal: on one machine that is one clock.
Then the old leader is brought back (SIGCONT, or a restart) and the next trial waits
for all nodes to agree again.

The cluster is anything with the few methods :class:`ProcessCluster` has that a trial
uses, so the same trials run against PySyncObj nodes that write the same log lines.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from _common import percentile

_POLL = 0.002

# The core's log lines that mark each step of an election (almost_raft.core, INFO).
_STEPS = {
    "is down; campaigning soon": "evidence",
    "sending pre-vote requests early": "early_prevote",
    "handed leadership of term": "handover",
    "asking for pre-votes for term": "prevote",
    "campaigning for term": "campaign",
    "became leader of term": "elected",
}


class Cluster(Protocol):
    """The part of :class:`almost_raft.node._process_cluster.ProcessCluster` a trial uses."""

    ids: list[str]

    def log_path(self, node: str) -> Path: ...

    def kill(self, node: str, signum: signal.Signals = ...) -> float: ...

    def restart(self, node: str) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One line of a node's log that matters here."""

    node: str
    at: float
    kind: str  # "view" (leader_changed) or one of the _STEPS values
    leader: str | None = None
    term: int = 0


class LogWatch:
    """Follows every node's log and keeps the events that matter, in order per node."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._offsets = dict.fromkeys(cluster.ids, 0)
        self._partial = dict.fromkeys(cluster.ids, b"")
        self.events: dict[str, list[Event]] = {node: [] for node in cluster.ids}

    def poll(self) -> None:
        """Read what every log gained since the last poll."""
        for node in self._cluster.ids:
            try:
                with self._cluster.log_path(node).open("rb") as file:
                    file.seek(self._offsets[node])
                    data = file.read()
            except FileNotFoundError:
                continue
            self._offsets[node] += len(data)
            *lines, self._partial[node] = (self._partial[node] + data).split(b"\n")
            for line in lines:
                event = _parse(node, line)
                if event is not None:
                    self.events[node].append(event)

    def view(self, node: str, before: float = float("inf")) -> tuple[str | None, int] | None:
        """The leader and term ``node`` knew at ``before`` (default: now), if any."""
        for event in reversed(self.events[node]):
            if event.kind == "view" and event.at < before:
                return event.leader, event.term
        return None

    def agreed(self, nodes: Sequence[str]) -> tuple[str, int] | None:
        """``(leader, term)`` if all ``nodes`` name the same leader, which is one of them."""
        views = {self.view(node) for node in nodes}
        if len(views) != 1:
            return None
        (view,) = views
        if view is None or view[0] is None or view[0] not in nodes:
            return None
        return view[0], view[1]

    def since(self, nodes: Sequence[str], start: float, kind: str) -> list[Event]:
        """Events of ``kind`` logged by ``nodes`` at or after ``start``, oldest first."""
        found = [e for n in nodes for e in self.events[n] if e.kind == kind and e.at >= start]
        return sorted(found, key=lambda event: event.at)

    def wait(
        self, condition: Callable[[], tuple[str, int] | None], deadline: float
    ) -> tuple[str, int] | None:
        """Poll the logs until ``condition`` holds, or ``None`` after ``deadline`` s."""
        end = time.monotonic() + deadline
        while True:
            self.poll()
            found = condition()
            if found is not None or time.monotonic() > end:
                return found
            time.sleep(_POLL)


def _parse(node: str, line: bytes) -> Event | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    at = entry.get("monotonic")
    if not isinstance(at, int | float):
        return None
    if entry.get("event") == "leader_changed":
        leader, term = entry.get("leader"), entry.get("term")
        if (leader is None or isinstance(leader, str)) and isinstance(term, int):
            return Event(node, float(at), "view", leader, term)
        return None
    message = entry.get("message")
    if isinstance(message, str):
        for text, kind in _STEPS.items():
            if text in message:
                return Event(node, float(at), kind)
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Trial:
    """One failover, in seconds after the signal.

    Attributes:
        old_term: the term of the leader that was signalled.
        new_term: the term of the leader all live nodes agreed on.
        elected: when the new leader logged that it leads.
        all_know: when the last live node logged the new leader.
        evidence: when the first live node took the transport's word that the leader
            was gone (crashes only), or ``None``.
        first_prevote: when the first pre-vote round started, or ``None``.
        early_prevote: when the first live node sent pre-vote requests because its
            connection to the leader ended (crashes only), or ``None``.
        winner_evidence: when the node that won took the transport's word that the
            leader was gone, or ``None``.
        first_campaign: when the first real election started, or ``None``.
        prevotes: pre-vote rounds started by the live nodes during the failover.
        campaigns: real elections (terms raised) started during the failover.
    """

    old_term: int
    new_term: int
    elected: float
    all_know: float
    evidence: float | None
    first_prevote: float | None
    first_campaign: float | None
    prevotes: int
    campaigns: int
    early_prevote: float | None = None
    winner_evidence: float | None = None

    @property
    def split(self) -> bool:
        """Whether the vote split: no one won the first term, so another was needed."""
        return self.new_term - self.old_term > 1

    @property
    def contested(self) -> bool:
        """Whether more than one live node campaigned (in one term or in several)."""
        return self.campaigns > 1


@dataclasses.dataclass(slots=True)
class TrialRun:
    """All trials of one setting, and the ones that did not count."""

    trials: list[Trial] = dataclasses.field(default_factory=list)
    timed_out: int = 0
    discarded: int = 0


def run_trials(
    cluster: Cluster,
    signum: signal.Signals,
    trials: int,
    *,
    heartbeat: float,
    settle: float,
    deadline: float = 10.0,
    agree_deadline: float = 30.0,
    rng: random.Random | None = None,
    progress: Callable[[int, Trial | None], None] | None = None,
) -> TrialRun:
    """Signal the leader ``trials`` times and time each failover from the logs.

    Args:
        cluster: a started cluster.
        signum: SIGKILL (a crash the transport notices), SIGTERM (a clean shutdown that
            hands over) or SIGSTOP (a silent failure: the sockets stay open).
        trials: how many failovers to measure.
        heartbeat: the leader's heartbeat interval; the signal falls at a random moment
            of one.
        settle: seconds to wait after all nodes agree before the next signal.
        deadline: seconds a failover may take before the trial counts as timed out.
        agree_deadline: seconds the cluster may take to agree again after a trial.
        rng: the randomness of the waits.
        progress: called after each trial with its number and result (``None`` if it
            did not count).

    Raises:
        TimeoutError: the cluster did not agree on a leader within ``agree_deadline``.
    """
    rng = rng or random.Random()
    watch = LogWatch(cluster)
    everyone = list(cluster.ids)
    run = TrialRun()
    attempt = 0
    while len(run.trials) < trials:
        attempt += 1
        if attempt > 3 * trials + 10:
            break
        if watch.wait(lambda: watch.agreed(everyone), agree_deadline) is None:
            raise TimeoutError(f"the nodes did not agree on a leader in {agree_deadline}s")
        time.sleep(settle + rng.uniform(0, heartbeat))
        watch.poll()
        before = watch.agreed(everyone)
        if before is None:
            continue
        leader, term = before
        sent_at = cluster.kill(leader, signum)
        live = [node for node in everyone if node != leader]

        def newer(live: list[str] = live, term: int = term) -> tuple[str, int] | None:
            found = watch.agreed(live)
            return found if found is not None and found[1] > term else None

        after = watch.wait(newer, deadline)
        trial = None
        if any(watch.view(node, sent_at) != before for node in everyone):
            # The leader changed between the last look and the signal: not a failover
            # of the leader that was signalled.
            run.discarded += 1
        elif after is None:
            run.timed_out += 1
        else:
            trial = _measure(watch, live, sent_at, term, after)
            run.trials.append(trial)
        if signum == signal.SIGSTOP:
            cluster.kill(leader, signal.SIGCONT)
        else:
            cluster.restart(leader)
        if progress is not None:
            progress(len(run.trials), trial)
    return run


def _measure(
    watch: LogWatch, live: list[str], sent_at: float, old_term: int, after: tuple[str, int]
) -> Trial:
    leader, term = after
    adopted = []
    for node in live:
        # When the node took up the view it ended with: its last change before it.
        events = [e for e in watch.events[node] if e.kind == "view" and e.at >= sent_at]
        at = sent_at
        for event in events:
            if (event.leader, event.term) == after:
                at = event.at
                break
        adopted.append(at)
    elected = next(
        (e.at for e in watch.since([leader], sent_at, "view") if (e.leader, e.term) == after),
        max(adopted),
    )
    evidence = watch.since(live, sent_at, "evidence")
    won_on = watch.since([leader], sent_at, "evidence") if leader in live else []
    early = watch.since(live, sent_at, "early_prevote")
    prevotes = watch.since(live, sent_at, "prevote")
    campaigns = watch.since(live, sent_at, "campaign")
    end = max(adopted)
    return Trial(
        old_term=old_term,
        new_term=term,
        elected=elected - sent_at,
        all_know=end - sent_at,
        evidence=evidence[0].at - sent_at if evidence else None,
        first_prevote=prevotes[0].at - sent_at if prevotes else None,
        first_campaign=campaigns[0].at - sent_at if campaigns else None,
        prevotes=sum(1 for e in prevotes if e.at <= end),
        campaigns=sum(1 for e in campaigns if e.at <= end),
        early_prevote=early[0].at - sent_at if early else None,
        winner_evidence=won_on[0].at - sent_at if won_on else None,
    )


def breakdown(trials: Sequence[Trial]) -> dict[str, float]:
    """Median milliseconds of each step after the signal, over ``trials``."""

    def median(values: list[float | None]) -> float:
        return percentile([v * 1000 for v in values if v is not None], 50)

    return {
        "evidence_ms": median([t.evidence for t in trials]),
        "early_prevote_ms": median([t.early_prevote for t in trials]),
        "winner_evidence_ms": median([t.winner_evidence for t in trials]),
        "first_prevote_ms": median([t.first_prevote for t in trials]),
        "first_campaign_ms": median([t.first_campaign for t in trials]),
        "elected_ms": median([t.elected for t in trials]),
        "all_know_ms": median([t.all_know for t in trials]),
        "split_share": (sum(t.split for t in trials) / len(trials)) if trials else float("nan"),
        "contested_share": (
            sum(t.contested for t in trials) / len(trials) if trials else float("nan")
        ),
    }

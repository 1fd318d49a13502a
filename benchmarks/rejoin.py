"""Rejoin after a partition: how soon a cut-off node knows the leader again after the heal.

    .venv/bin/python benchmarks/rejoin.py --partition 1.5 --trials 20
    .venv/bin/python benchmarks/rejoin.py --partition 20 --trials 8    # about 4 minutes
    .venv/bin/python benchmarks/rejoin.py --netns --partition 1.5 --trials 20   # as root

Starts five ``almost-raft run`` processes on 127.0.0.1 (election timeout 150-300 ms,
heartbeat 50 ms), every message through a proxy per directed link
(``almost_raft.chaos.ProxyNetwork``). Each trial isolates one follower by *stalling* every
link to and from it: established connections stay open and carry nothing, as in a real
partition, and at the heal what they held is released at TCP's next retransmission, whose
timer has doubled from 200 ms since the first unacknowledged frame. New connections made
during the partition are accepted and lead nowhere. A node that relied on its old
connections would rejoin after that backoff; one that gives an unanswered connection up
and redials rejoins within a round trip or a redial.

A trial is timed from the heal (this process's ``time.monotonic()``) to the moment the
isolated node logs the leader again (the nodes log the same clock). Prints median, p99
and max, and writes ``benchmarks/results/rejoin_<seconds>s.json``.

With ``--netns`` (root only) each node runs in a network namespace of its own
(``almost_raft.chaos.NamespaceNetwork``) with the kernel's TCP between them, and the
partition drops every IP packet to and from the isolated node, both ways, until the heal:
the kernel's own SYN retransmissions and retransmission backoff are what the node lives
through. The result file gets a ``-netns`` suffix.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import time
from typing import Protocol

from _common import machine, summarize, table, write_json
from _process_trials import Event, LogWatch

from almost_raft.chaos import LinkState, NamespaceNetwork, ProxyNetwork
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

TIMINGS = ClusterTimings(
    election_timeout_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=50
)
TARGETS = {1.5: "<= 300 ms", 20.0: "<= 500 ms"}


class Network(Protocol):
    """What a trial needs of the network: setting one link's state."""

    def set_state(self, src: str, dst: str, state: LinkState) -> None: ...


def first_view(watch: LogWatch, node: str, since: float) -> Event | None:
    """The first leader ``node`` logged knowing at or after ``since``, if any."""
    for event in watch.events[node]:
        if event.kind == "view" and event.leader is not None and event.at >= since:
            return event
    return None


def rejoin_times(
    cluster: ProcessCluster,
    network: Network,
    partition: float,
    trials: int,
    rng: random.Random,
) -> tuple[list[float], int]:
    """Isolate a follower ``trials`` times; return the rejoin times and the misses."""
    watch = LogWatch(cluster)
    nodes = list(cluster.ids)
    times: list[float] = []
    missed = 0
    for trial in range(trials):
        agreed = watch.wait(lambda: watch.agreed(nodes), 30.0)
        if agreed is None:
            raise TimeoutError("the cluster did not agree on a leader")
        leader, _ = agreed
        # Settled: connections count as healthy and the backoff is reset.
        time.sleep(1.0 + rng.random() * 0.05)
        isolated = rng.choice([node for node in nodes if node != leader])
        links = [(isolated, n) for n in nodes if n != isolated]
        links += [(n, isolated) for n in nodes if n != isolated]
        for link in links:
            network.set_state(*link, LinkState(stall=True))
        time.sleep(partition)
        # Timed from the start of the heal: a node that hears the leader over the first
        # mended link, before the last one is, has rejoined.
        healed = time.monotonic()
        for link in links:
            network.set_state(*link, LinkState())

        def back(node: str = isolated, since: float = healed) -> tuple[str, int] | None:
            event = first_view(watch, node, since)
            return None if event is None else (event.leader or "", event.term)

        if watch.wait(back, 15.0) is None:
            missed += 1
            print(f"  trial {trial + 1}: {isolated} did not rejoin within 15 s", flush=True)
            continue
        first = first_view(watch, isolated, healed)
        assert first is not None
        times.append(first.at - healed)
        print(
            f"  trial {trial + 1}/{trials}: {isolated} rejoined {(first.at - healed) * 1000:.0f} "
            f"ms after the heal (leader {first.leader})",
            flush=True,
        )
    return times, missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", type=float, default=1.5, help="seconds isolated")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--netns",
        action="store_true",
        help="each node in a network namespace of its own, the kernel's TCP between them; "
        "the partition drops their IP packets (needs root)",
    )
    args = parser.parse_args()
    if args.netns and (reason := NamespaceNetwork.unavailable_reason()) is not None:
        parser.error(reason)
    info = machine()
    print(
        f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_at_start']}"
    )
    print(
        f"5 processes, election timeout {TIMINGS.election_timeout_ms}-"
        f"{TIMINGS.election_timeout_max_ms} ms, heartbeat {TIMINGS.heartbeat_interval_ms} ms, "
        f"{args.trials} partitions of {args.partition:g} s"
        + (", in network namespaces (kernel TCP)" if args.netns else "")
    )
    ids = [f"n{i}" for i in range(1, 6)]
    packets = None
    if args.netns:
        with NamespaceNetwork(ids, seed=args.seed) as namespaces:
            cluster = ProcessCluster(
                5, timings=TIMINGS, host=namespaces.address, spawn_prefix=namespaces.exec_prefix
            )
            with cluster:
                times, missed = rejoin_times(
                    cluster, namespaces, args.partition, args.trials, random.Random(args.seed)
                )
            packets = dataclasses.asdict(namespaces.stats())
        print(f"packets {packets}")
    else:
        real: dict[str, tuple[str, int]] = {}
        with ProxyNetwork(ids, real.__getitem__, args.seed) as network:
            cluster = ProcessCluster(5, timings=TIMINGS, peer_address=network.address)
            with cluster:
                real.update(cluster.addresses)
                times, missed = rejoin_times(
                    cluster, network, args.partition, args.trials, random.Random(args.seed)
                )
    numbers = summarize(times)
    target = TARGETS.get(args.partition, "-")
    print()
    print(
        table(
            ["partition", "trials", "median ms", "p99 ms", "max ms", "missed", "target"],
            [
                [
                    f"{args.partition:g} s",
                    len(times),
                    numbers["median_ms"],
                    numbers["p99_ms"],
                    numbers["max_ms"],
                    missed,
                    target,
                ]
            ],
        )
    )
    path = write_json(
        f"rejoin_{args.partition:g}s" + ("-netns" if args.netns else ""),
        {
            "network": "netns" if args.netns else "proxy",
            "packets": packets,
            "machine": info,
            "timings": dataclasses.asdict(TIMINGS),
            "partition_seconds": args.partition,
            "rejoin": numbers,
            "missed": missed,
            "times": times,
            "load_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

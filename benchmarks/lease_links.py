"""An exclusive leader command on a cluster whose links delay and lose packets.

    .venv/bin/python benchmarks/lease_links.py                     # as root; about 2 minutes
    .venv/bin/python benchmarks/lease_links.py --seconds 60 --loss 0 --loss 0.01 --loss 0.05

Five ``almost-raft run`` processes, each in a network namespace of its own
(``almost_raft.chaos.NamespaceNetwork``, kernel TCP), with an exclusive leader command
(the default: it runs only under a lease, and a watchdog stops it at the lease's end),
election timeouts of 150-300 ms and 50 ms heartbeats, and every link delaying each packet
by ``--delay`` ± ``--jitter`` ms and losing a share ``--loss`` of them. Nothing fails on
purpose: for ``--seconds`` it counts how often the leader changed and how often the
command was started, and stamps each start. Among the stamps, two commands that ran at
once on different nodes would be a broken lease; their number is printed too.

A lease lasts the election timeout less the clock-drift allowance and a margin (141 ms
here) from the time its heartbeat round left; over links that lose packets, TCP holds the
answers behind a lost one for about two heartbeat intervals and a round trip, so a lease
can run out while the node goes on leading. The watchdog then stops the command, and it
starts again under the next lease; the leader does not change for it.

Prints a table and writes ``benchmarks/results/lease_links.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, table, write_json

from almost_raft.chaos import LinkState, NamespaceNetwork
from almost_raft.chaos._stamps import STAMPING_COMMAND, lives, overlaps, read_stamps
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

TIMINGS = ClusterTimings(
    election_timeout_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=50
)


def measure(delay_ms: float, jitter_ms: float, loss: float, seconds: float) -> dict[str, Any]:
    """One cluster, left alone for ``seconds`` on links of the given kind."""
    ids = [f"n{i}" for i in range(1, 6)]
    with tempfile.TemporaryDirectory(prefix="lease-links-") as scratch:
        stamps = Path(scratch) / "stamps"
        command = [sys.executable, "-c", STAMPING_COMMAND, str(stamps)]
        with NamespaceNetwork(ids, seed=1) as namespaces:
            namespaces.set_all(LinkState(delay=delay_ms / 1000, jitter=jitter_ms / 1000, loss=loss))
            with ProcessCluster(
                5,
                timings=TIMINGS,
                host=namespaces.address,
                spawn_prefix=namespaces.exec_prefix,
                command=command,
            ) as cluster:
                first = cluster.wait_for_agreed_leader(deadline=30.0)
                starts_before = len(lives(read_stamps(stamps)))
                time.sleep(seconds)
                last = cluster.agreed_leader(cluster.ids)
                stamped = read_stamps(stamps)
    return {
        "delay_ms": delay_ms,
        "jitter_ms": jitter_ms,
        "loss": loss,
        "seconds": seconds,
        "first_leader": list(first),
        "last_leader": None if last is None else list(last),
        "leader_changes": None if last is None else last[1] - first[1],
        "command_starts": len(lives(stamped)) - starts_before,
        "overlaps": overlaps(stamped),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--delay", type=float, default=20.0, help="one way, ms")
    parser.add_argument("--jitter", type=float, default=10.0, help="ms")
    parser.add_argument(
        "--loss", type=float, action="append", help="share of packets lost (repeatable)"
    )
    args = parser.parse_args()
    if (reason := NamespaceNetwork.unavailable_reason()) is not None:
        print(f"network namespaces are not available: {reason}")
        return 2
    losses = args.loss if args.loss else [0.0, 0.05]
    results = [measure(args.delay, args.jitter, loss, args.seconds) for loss in losses]
    rows = [
        [
            f"{r['delay_ms']:g} ± {r['jitter_ms']:g} ms, {r['loss']:.0%} loss",
            r["seconds"],
            "-" if r["leader_changes"] is None else r["leader_changes"],
            r["command_starts"],
            len(r["overlaps"]),
        ]
        for r in results
    ]
    print(table(["links", "seconds", "terms gone by", "command starts", "overlaps"], rows))
    print(f"wrote {write_json('lease_links', {'machine': machine(), 'runs': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

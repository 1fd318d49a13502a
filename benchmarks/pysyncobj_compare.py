"""almost-raft against PySyncObj: the same failovers, same machine, one run.

    .venv/bin/pip install pysyncobj          # not a dependency of almost-raft
    .venv/bin/python benchmarks/pysyncobj_compare.py --trials 40    # about 6 minutes
    .venv/bin/python benchmarks/pysyncobj_compare.py --quick        # under a minute

Five processes of each on 127.0.0.1, election timeouts 150-300 ms. almost-raft sends a
heartbeat every 50 ms; PySyncObj every 45 ms (``appendEntriesPeriod``, under a third of
its minimum timeout), with its ``autoTickPeriod`` at its default 50 ms and at 10 ms,
since its timers are only looked at once per tick. The leader gets SIGKILL (a crash: the
connections break) or SIGSTOP (a silent failure), and each failover is timed from the
signal until every live node names the new leader.

Each PySyncObj node is a small script written into a temporary directory at run time: it
polls its ``SyncObj`` every millisecond and writes a JSON line with ``time.monotonic()``
when the leader it knows changes, the same ``leader_changed`` lines almost-raft's nodes
log, so both are timed by the same code. Polling adds up to a millisecond to PySyncObj's
times. Writes ``benchmarks/results/pysyncobj_compare.json`` and a CDF plot.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

from _common import machine, plot_cdfs, summarize, table, write_json
from _process_trials import Trial, TrialRun, breakdown, run_trials
from failover import TIMINGS, measure

# The node: argv is its id, then "id=host:port" for every node, then the timings.
NODE_SCRIPT = r"""
import json, sys, time
from pysyncobj import SyncObj, SyncObjConf

me = sys.argv[1]
addresses = dict(arg.split("=", 1) for arg in sys.argv[2].split(","))
low, high, heartbeat, tick = (float(x) for x in sys.argv[3:7])
ids = {address: node for node, address in addresses.items()}


def log(message, **extra):
    line = {"monotonic": round(time.monotonic(), 6), "message": message, "node": me}
    line.update(extra)
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def on_state(old, new):
    if new == 1:
        term = obj._SyncObj__raftCurrentTerm
        log(f"{me}: campaigning for term {term + 1}")


conf = SyncObjConf(
    raftMinTimeout=low,
    raftMaxTimeout=high,
    appendEntriesPeriod=heartbeat,
    autoTick=True,
    autoTickPeriod=tick,
    connectionRetryTime=0.5,
    onStateChanged=on_state,
)
partners = [address for node, address in addresses.items() if node != me]
obj = SyncObj(addresses[me], partners, conf=conf)
last = None
while True:
    leader = obj._getLeader()
    leader_id = None if leader is None else ids.get(str(leader))
    term = obj._SyncObj__raftCurrentTerm
    view = (leader_id, term if leader_id is not None else None)
    if view != last:
        last = view
        log(f"leader is {leader_id}", event="leader_changed", leader=leader_id, term=term)
    time.sleep(0.001)
"""


class PySyncObjCluster:
    """N PySyncObj nodes, each the script above in its own process.

    Signals go only to the processes this object started; :meth:`close` ends them all
    and removes its temporary directory.
    """

    def __init__(self, size: int, low: float, high: float, heartbeat: float, tick: float):
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        self._args = [str(low), str(high), str(heartbeat), str(tick)]
        self._directory = Path(tempfile.mkdtemp(prefix="pysyncobj-bench-"))
        self._script = self._directory / "node.py"
        self._script.write_text(NODE_SCRIPT, encoding="utf-8")
        ports = _free_ports(size)
        self._addresses = ",".join(
            f"{node}=127.0.0.1:{port}" for node, port in zip(self.ids, ports, strict=True)
        )
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        atexit.register(self.close)

    def __enter__(self) -> PySyncObjCluster:
        for node in self.ids:
            self._spawn(node)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_path(self, node: str) -> Path:
        return self._directory / f"{node}.log"

    def _spawn(self, node: str) -> None:
        log = self._logs.get(node)
        if log is None:
            log = self._logs[node] = self.log_path(node).open("ab")
        self._processes[node] = subprocess.Popen(
            [sys.executable, str(self._script), node, self._addresses, *self._args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )

    def kill(self, node: str, signum: signal.Signals = signal.SIGKILL) -> float:
        """Signal ``node``'s process; wait for it to exit unless it is SIGSTOP/SIGCONT."""
        process = self._processes[node]
        sent_at = time.monotonic()
        process.send_signal(signum)
        if signum not in (signal.SIGSTOP, signal.SIGCONT):
            process.wait(timeout=10)
        return sent_at

    def restart(self, node: str) -> None:
        self._spawn(node)

    def close(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
                    process.kill()
                process.wait()
        self._processes.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        shutil.rmtree(self._directory, ignore_errors=True)


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def measure_pysyncobj(
    signum: signal.Signals, trials: int, tick: float, seed: int, label: str
) -> TrialRun:
    low = TIMINGS.election_timeout_ms / 1000
    high = TIMINGS.election_timeout_max_ms / 1000

    def progress(done: int, trial: Trial | None) -> None:
        if trial is not None and (done % 10 == 0 or done == trials):
            print(f"  {label}: {done}/{trials} trials", flush=True)

    with PySyncObjCluster(5, low, high, heartbeat=0.045, tick=tick) as cluster:
        return run_trials(
            cluster,
            signum,
            trials,
            heartbeat=0.045,
            settle=1.2 if signum == signal.SIGKILL else 0.3,
            rng=random.Random(seed),
            progress=progress,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="failovers per setting")
    parser.add_argument("--quick", action="store_true", help="3 trials per setting")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if importlib.util.find_spec("pysyncobj") is None:
        sys.exit(
            "PySyncObj is not installed; it is not a dependency of almost-raft. "
            "Install it into this environment with: .venv/bin/pip install pysyncobj"
        )
    trials = 3 if args.quick else args.trials
    info = machine()
    info["pysyncobj"] = version("pysyncobj")
    print(
        f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"PySyncObj {info['pysyncobj']}, load {info['loadavg_at_start']}; {trials} trials each"
    )
    settings: list[tuple[str, str, signal.Signals, float | None]] = [
        ("almost-raft", "crash (SIGKILL)", signal.SIGKILL, None),
        ("almost-raft", "silent (SIGSTOP)", signal.SIGSTOP, None),
        ("PySyncObj tick 50 ms", "crash (SIGKILL)", signal.SIGKILL, 0.05),
        ("PySyncObj tick 50 ms", "silent (SIGSTOP)", signal.SIGSTOP, 0.05),
        ("PySyncObj tick 10 ms", "crash (SIGKILL)", signal.SIGKILL, 0.01),
        ("PySyncObj tick 10 ms", "silent (SIGSTOP)", signal.SIGSTOP, 0.01),
    ]
    numbers: dict[str, dict[str, Any]] = {}
    series: dict[str, list[float]] = {}
    for index, (system, failure, signum, tick) in enumerate(settings):
        label = f"{system}, {failure}"
        seed = args.seed * 100 + index
        if tick is None:
            settle = 1.2 if signum == signal.SIGKILL else 0.3
            run = measure(5, TIMINGS, signum, trials, settle, seed, label)
        else:
            run = measure_pysyncobj(signum, trials, tick, seed, label)
        know = summarize([t.all_know for t in run.trials])
        numbers[label] = {
            "system": system,
            "failure": failure,
            "all_know": know,
            "elected": summarize([t.elected for t in run.trials]),
            "breakdown": breakdown(run.trials),
            "timed_out": run.timed_out,
            "discarded": run.discarded,
            "all_know_seconds": [t.all_know for t in run.trials],
        }
        series[label] = [t.all_know for t in run.trials]
        print(
            f"{label}: median {know['median_ms']:.1f} ms, p99 {know['p99_ms']:.1f} ms",
            flush=True,
        )
    rows = []
    for label, entry in numbers.items():
        ours = numbers[f"almost-raft, {entry['failure']}"]["all_know"]
        know = entry["all_know"]
        rows.append(
            [
                label,
                know["n"],
                know["median_ms"],
                know["p99_ms"],
                know["max_ms"],
                f"{entry['breakdown']['split_share'] * 100:.1f}%",
                f"{know['median_ms'] / ours['median_ms']:.2f}x",
                f"{know['p99_ms'] / ours['p99_ms']:.2f}x",
                entry["timed_out"],
            ]
        )
    headers = [
        "system, failure",
        "trials",
        "median ms",
        "p99 ms",
        "max ms",
        "split votes",
        "median / almost-raft's",
        "p99 / almost-raft's",
        "timed out",
    ]
    print()
    print(table(headers, rows))
    name = "pysyncobj_compare" + ("_quick" if args.quick else "")
    path = write_json(
        name, {"machine": info, "load_at_end": list(os.getloadavg()), "settings": numbers}
    )
    print(f"wrote {path}")
    png = plot_cdfs(name, series, "almost-raft and PySyncObj, 5 processes, 150-300 ms", log_x=True)
    if png is not None:
        print(f"wrote {png}")


if __name__ == "__main__":
    main()

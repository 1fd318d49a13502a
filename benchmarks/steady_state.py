"""What an idle cluster costs: CPU, memory and messages per second of each node.

    .venv/bin/python benchmarks/steady_state.py                  # 5 nodes, 30 s, baselines
    .venv/bin/python benchmarks/steady_state.py --sizes 3,5,7,9,15 --duration 10
    .venv/bin/python benchmarks/steady_state.py --profile        # where a node's CPU goes
    .venv/bin/python benchmarks/steady_state.py --side-by-side /tmp/old/src --duration 15
    .venv/bin/python benchmarks/steady_state.py --against-pysyncobj --duration 15 --windows 3
    .venv/bin/pip install pysyncobj     # optional, for the comparison; not a dependency

A cluster of ``almost-raft run`` processes (:class:`ProcessCluster`) on 127.0.0.1 with
50 ms heartbeats and election timeouts drawn from 500-1000 ms elects a leader, settles,
and is then left alone for ``--duration`` seconds. Per node it reports:

- CPU, in percent of one core: the ``utime + stime`` delta of ``/proc/PID/stat`` over
  the window, all threads included;
- RSS (``VmRSS`` of ``/proc/PID/status``), once before anything asked for ``/metrics``
  and once after, since the first scrape loads the modules that write it;
- messages sent and received per second, from the node's ``/metrics`` counters read
  just before and just after the window, and wake-ups per second (voluntary context
  switches of all threads, ``/proc/PID/task/*/status``), which PySyncObj has too.

In the same run it measures baselines with this interpreter: the RSS of a bare
``python -c 'import asyncio; ...sleep'`` process (and of one that imports nothing); the CPU
of a process that only echoes one message per heartbeat interval, once with an asyncio
protocol and once with a plain selectors loop (the floor under any follower that wakes
for each heartbeat); and,
if pysyncobj is installed, five PySyncObj processes with the same timings (its
``appendEntriesPeriod`` is the heartbeat). PySyncObj insists that its minimum timeout
exceed three heartbeats, which is why both use 500-1000 ms rather than 150-300 ms; the
timeout does not change the steady-state cost, the heartbeat rate does.

``--profile`` runs every node under cProfile timed by CPU time (not wall time), enabled
by a signal once the cluster has settled, and prints where the leader's and a
follower's CPU goes per heartbeat.

Writes ``benchmarks/results/steady_state.json`` (``steady_state_sizes.json`` for
``--sizes``) and a PNG next to it if matplotlib is importable.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import importlib.util
import io
import json
import os
import platform
import pstats
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import almost_raft
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

RESULTS = Path(__file__).parent / "results"

#: 50 ms heartbeats; election timeouts 500-1000 ms (see the module docstring for why).
TIMINGS = ClusterTimings(
    election_timeout_ms=500,
    election_timeout_max_ms=1000,
    heartbeat_interval_ms=50,
    message_timeout_ms=100,
)

#: Seconds between the cluster agreeing on a leader and the start of the window.
SETTLE_SECONDS = 3.0

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

# One PySyncObj node: argv is its address, the partners' addresses joined by commas, the
# heartbeat and the two timeouts. It prints its state (0 follower, 1 candidate, 2 leader)
# on every change and exits cleanly on SIGTERM.
PYSYNCOBJ_NODE = r"""
import signal, sys
from pysyncobj import SyncObj, SyncObjConf

me, partners = sys.argv[1], sys.argv[2].split(",")
heartbeat, low, high = (float(x) for x in sys.argv[3:6])
# Blocked before SyncObj starts its thread, so only sigwait() below sees SIGTERM.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
conf = SyncObjConf(
    appendEntriesPeriod=heartbeat,
    raftMinTimeout=low,
    raftMaxTimeout=high,
    onStateChanged=lambda old, new: print(new, flush=True),
)
obj = SyncObj(me, partners, conf)
signal.sigwait({signal.SIGTERM})
obj.destroy()
"""

# An ``almost-raft run`` node under cProfile, timed by CPU time: SIGUSR1 starts the
# profiler, SIGUSR2 stops it and writes the stats to the file named by argv[1].
PROFILED_NODE = r"""
import cProfile, signal, sys, time
out = sys.argv.pop(1)
profiler = cProfile.Profile(time.process_time)
signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profiler.disable(), profiler.dump_stats(out)))
from almost_raft.cli._main import main
sys.exit(main(sys.argv[1:]))
"""


# ---------------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far, all threads, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        # The command name can contain spaces; the fields after it cannot.
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wakeups(pid: int) -> int:
    """How often the threads of ``pid`` slept and were woken so far (voluntary context
    switches): for an idle event loop, its wake-ups."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError), (task / "status").open(encoding="ascii") as file:
            for line in file:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def measure_window(pids: Mapping[str, int], duration: float) -> dict[str, dict[str, float]]:
    """CPU percent of one core and wake-ups per second of each process over ``duration``
    seconds."""
    cpu0 = {node: cpu_seconds(pid) for node, pid in pids.items()}
    wakeups0 = {node: wakeups(pid) for node, pid in pids.items()}
    started = time.monotonic()
    time.sleep(duration)
    elapsed = time.monotonic() - started
    window = {}
    for node, pid in pids.items():
        cpu = cpu_seconds(pid) - cpu0[node]
        window[node] = {
            "cpu_percent": cpu / elapsed * 100,
            "cpu_seconds": cpu,
            "wakeups_per_s": (wakeups(pid) - wakeups0[node]) / elapsed,
        }
    return window


# ---------------------------------------------------------------------- baselines


def bare_rss_mib(code: str, repeats: int = 3) -> float:
    """Median RSS in MiB of ``python -c code`` a second after it started."""
    samples = []
    for _ in range(repeats):
        process = subprocess.Popen([sys.executable, "-c", code])
        try:
            time.sleep(1.0)
            samples.append(rss_mib(process.pid))
        finally:
            process.kill()
            process.wait()
    return statistics.median(samples)


def measure_baselines() -> dict[str, float]:
    """RSS of an interpreter that imports nothing, and of one that imports asyncio."""
    return {
        "bare_python_rss_mib": bare_rss_mib("import time; time.sleep(60)"),
        "bare_asyncio_rss_mib": bare_rss_mib("import asyncio; asyncio.run(asyncio.sleep(60))"),
    }


# Echo servers that do nothing but answer each message: what one wake-up per message costs
# with an asyncio protocol, and with a plain selectors loop (PySyncObj's kind of loop).
# The asyncio floors read into a buffer of their own, as the node's transport does: a
# plain Protocol has asyncio allocate max_size (256 KiB) for every read, which alone
# cost about 0.3 % of a core in a broadcaster's floor here.
_ECHO_SERVERS = {
    "asyncio": """
import asyncio, socket, sys
class Echo(asyncio.BufferedProtocol):
    buffer = memoryview(bytearray(65536))
    def connection_made(self, transport): self.transport = transport
    def get_buffer(self, sizehint): return self.buffer
    def buffer_updated(self, nbytes): self.transport.write(self.buffer[:nbytes].tobytes())
async def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    server = await asyncio.get_running_loop().create_server(Echo, sock=sock)
    await asyncio.sleep(3600)
asyncio.run(main())
""",
    "selectors": """
import selectors, socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
conn, _ = listener.accept()
selector = selectors.DefaultSelector()
selector.register(conn, selectors.EVENT_READ)
while True:
    for _ in selector.select():
        data = conn.recv(4096)
        if not data:
            sys.exit()
        conn.send(data)
""",
}


def measure_echo_floor(rate: float, duration: float) -> dict[str, float]:
    """CPU percent of a process that answers ``rate`` messages a second and does nothing
    else, for each kind of loop: the floor under a follower's cost at that heartbeat rate."""
    floor = {}
    for kind, code in _ECHO_SERVERS.items():
        listener = socket.create_server(("127.0.0.1", 0))
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(listener.fileno())], pass_fds=[listener.fileno()]
        )
        try:
            with socket.create_connection(listener.getsockname()[:2], timeout=10) as client:
                client.sendall(b"x")
                client.recv(16)
                before = cpu_seconds(process.pid)
                started = time.monotonic()
                sent = 0
                while time.monotonic() - started < duration:
                    client.sendall(b"x" * 40)
                    client.recv(64)
                    sent += 1
                    time.sleep(max(0.0, started + sent / rate - time.monotonic()))
                elapsed = time.monotonic() - started
                floor[f"{kind}_echo_cpu_percent"] = (
                    (cpu_seconds(process.pid) - before) / elapsed * 100
                )
        finally:
            listener.close()
            process.kill()
            process.wait()
    return floor


# A process that sends one message to each peer every heartbeat interval and reads their
# answers, and does nothing else: the floor under a leader's cost with an asyncio protocol.
_BROADCASTER = """
import asyncio, socket, sys
peers = []
class Peer(asyncio.BufferedProtocol):
    buffer = memoryview(bytearray(65536))
    def connection_made(self, transport): peers.append(transport)
    def get_buffer(self, sizehint): return self.buffer
    def buffer_updated(self, nbytes): pass
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_server(Peer, sock=socket.socket(fileno=int(sys.argv[1])))
    interval = float(sys.argv[2])
    def beat():
        for peer in peers:
            peer.write(b"x" * 40)
        loop.call_later(interval, beat)
    beat()
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def measure_broadcast_floor(peers: int, interval: float, duration: float) -> float:
    """CPU percent of an asyncio process that sends to ``peers`` peers every ``interval``
    seconds and reads one answer from each: the floor under a leader's cost."""
    listener = socket.create_server(("127.0.0.1", 0))
    process = subprocess.Popen(
        [sys.executable, "-c", _BROADCASTER, str(listener.fileno()), str(interval)],
        pass_fds=[listener.fileno()],
    )
    clients: list[socket.socket] = []
    try:
        selector = selectors.DefaultSelector()
        for _ in range(peers):
            client = socket.create_connection(listener.getsockname()[:2], timeout=10)
            clients.append(client)
            selector.register(client, selectors.EVENT_READ)
        for client in clients:
            # The first message shows the process has started and accepted every peer:
            # its start-up (interpreter, imports) stays out of the window.
            client.sendall(client.recv(4096))
        before = cpu_seconds(process.pid)
        started = time.monotonic()
        while (left := started + duration - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                answer = key.fileobj
                assert isinstance(answer, socket.socket)
                answer.sendall(answer.recv(4096))
        return (cpu_seconds(process.pid) - before) / (time.monotonic() - started) * 100
    finally:
        for client in clients:
            client.close()
        listener.close()
        process.kill()
        process.wait()


# ---------------------------------------------------------------------- almost-raft


def message_counts(metrics_text: str) -> dict[str, float]:
    """Messages sent and received so far, summed over kinds, and heartbeats sent."""
    counts = {"sent": 0.0, "received": 0.0, "heartbeats_sent": 0.0}
    for line in metrics_text.splitlines():
        if line.startswith("almost_raft_messages_sent_total{"):
            value = float(line.rsplit(" ", 1)[1])
            counts["sent"] += value
            if 'kind="heartbeat"' in line:
                counts["heartbeats_sent"] += value
        elif line.startswith("almost_raft_messages_received_total{"):
            counts["received"] += float(line.rsplit(" ", 1)[1])
    return counts


def _scrape_all(cluster: ProcessCluster) -> dict[str, dict[str, float]]:
    scraped = {}
    for node in cluster.ids:
        text = cluster.metrics(node, timeout=2.0)
        if text is None:
            raise RuntimeError(f"{node} did not answer /metrics")
        scraped[node] = message_counts(text)
    return scraped


@contextlib.contextmanager
def _nodes_from(src: Path | None) -> Iterator[None]:
    """Start nodes with ``src`` first on their import path (``None``: this tree).

    The tree is byte-compiled first, as an installed package is: a node that compiles its
    modules from source at every start keeps some of the compiler's freed memory resident,
    by an amount that even depends on the length of the tree's path, while the bare
    asyncio baseline loads the standard library's compiled files.
    """
    package = Path(almost_raft.__file__).parent if src is None else src / "almost_raft"
    compileall.compile_dir(str(package), quiet=1)
    if src is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src) if old is None else f"{src}{os.pathsep}{old}"
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def measure_almost_raft(size: int, duration: float, src: Path | None = None) -> dict[str, Any]:
    """Start ``size`` nodes (from the source tree ``src`` if given), let them settle, and
    measure the idle window."""
    with _nodes_from(src), ProcessCluster(size, timings=TIMINGS) as cluster:
        leader, term = cluster.wait_for_agreed_leader(deadline=30.0)
        time.sleep(SETTLE_SECONDS)
        pids = {node: pid for node in cluster.ids if (pid := cluster.pid(node)) is not None}
        rss_before = {node: rss_mib(pid) for node, pid in pids.items()}
        counts0 = _scrape_all(cluster)
        scraped0 = time.monotonic()
        window = measure_window(pids, duration)
        counts1 = _scrape_all(cluster)
        between = time.monotonic() - scraped0
        rss_after = {node: rss_mib(pid) for node, pid in pids.items()}
        still = cluster.agreed_leader(cluster.ids)
        nodes = {}
        for node in cluster.ids:
            sent = (counts1[node]["sent"] - counts0[node]["sent"]) / between
            received = (counts1[node]["received"] - counts0[node]["received"]) / between
            heartbeats = (
                counts1[node]["heartbeats_sent"] - counts0[node]["heartbeats_sent"]
            ) / between
            nodes[node] = {
                "role": "leader" if node == leader else "follower",
                **window[node],
                "rss_mib": rss_before[node],
                "rss_after_metrics_mib": rss_after[node],
                "messages_sent_per_s": sent,
                "messages_received_per_s": received,
                "heartbeats_sent_per_s": heartbeats,
            }
    return {
        "size": size,
        "leader": leader,
        "term": term,
        "same_leader_after": still == (leader, term),
        "nodes": nodes,
        **_summary(nodes),
    }


def _summary(nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Leader and median-follower figures of one cluster."""
    leaders = [n for n in nodes.values() if n["role"] == "leader"]
    followers = [n for n in nodes.values() if n["role"] != "leader"]
    summary: dict[str, float] = {}
    for key in ("cpu_percent", "rss_mib", "wakeups_per_s"):
        if leaders:
            summary[f"leader_{key}"] = leaders[0][key]
        if followers:
            summary[f"follower_{key}"] = statistics.median(f[key] for f in followers)
    if leaders and "messages_sent_per_s" in leaders[0]:
        leader = leaders[0]
        summary["leader_messages_per_s"] = (
            leader["messages_sent_per_s"] + leader["messages_received_per_s"]
        )
        summary["cluster_messages_per_s"] = sum(n["messages_sent_per_s"] for n in nodes.values())
        rounds = leader["heartbeats_sent_per_s"] / max(len(nodes) - 1, 1)
        if rounds > 0:
            # CPU per heartbeat round: the leader's sends and the answers it reads.
            summary["leader_cpu_ms_per_round"] = leader["cpu_percent"] * 10 / rounds
            summary["follower_cpu_us_per_heartbeat"] = (
                statistics.median(f["cpu_percent"] for f in followers) * 10_000 / rounds
            )
    return summary


def stable(measure: Callable[[], dict[str, Any]], attempts: int = 3) -> dict[str, Any]:
    """``measure()`` again, up to ``attempts`` times in all, while the leader changed
    during the window: the roles of such a window are not known. The result says how
    many attempts it took."""
    for attempt in range(1, attempts + 1):
        result = measure()
        if result["same_leader_after"]:
            break
        print(f"the leader changed during the window; measuring again ({attempt}/{attempts})")
    return {**result, "attempts": attempt}


# ---------------------------------------------------------------------- PySyncObj


def pysyncobj_available() -> bool:
    """Whether pysyncobj can be imported by this interpreter."""
    return importlib.util.find_spec("pysyncobj") is not None


def _free_addresses(count: int) -> list[str]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{sock.getsockname()[1]}" for sock in socks]


@contextlib.contextmanager
def _pysyncobj_cluster(size: int, directory: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    addresses = _free_addresses(size)
    heartbeat = TIMINGS.heartbeat_interval_ms / 1000
    low = TIMINGS.election_timeout_ms / 1000
    high = TIMINGS.election_timeout_max_ms / 1000
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for address in addresses:
            partners = ",".join(a for a in addresses if a != address)
            with (directory / f"{address}.out").open("wb") as out:
                processes[address] = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        PYSYNCOBJ_NODE,
                        address,
                        partners,
                        str(heartbeat),
                        str(low),
                        str(high),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _pysyncobj_states(directory: Path, addresses: Sequence[str]) -> dict[str, list[str]]:
    return {
        address: (directory / f"{address}.out").read_text("utf-8", "replace").split()
        for address in addresses
    }


def _pysyncobj_leader(states: Mapping[str, Sequence[str]]) -> str | None:
    leaders = [address for address, lines in states.items() if lines and lines[-1] == "2"]
    return leaders[0] if len(leaders) == 1 else None


def measure_pysyncobj(size: int, duration: float) -> dict[str, Any]:
    """Five (``size``) PySyncObj processes with the same timings, measured the same way."""
    with tempfile.TemporaryDirectory(prefix="steady-state-") as tmp:
        directory = Path(tmp)
        with _pysyncobj_cluster(size, directory) as processes:
            addresses = list(processes)
            deadline = time.monotonic() + 30.0
            while (leader := _pysyncobj_leader(_pysyncobj_states(directory, addresses))) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("PySyncObj elected no leader within 30 s")
                time.sleep(0.1)
            time.sleep(SETTLE_SECONDS)
            states_before = _pysyncobj_states(directory, addresses)
            pids = {address: process.pid for address, process in processes.items()}
            rss = {address: rss_mib(pid) for address, pid in pids.items()}
            window = measure_window(pids, duration)
            states_after = _pysyncobj_states(directory, addresses)
    nodes = {
        address: {
            "role": "leader" if address == leader else "follower",
            **window[address],
            "rss_mib": rss[address],
        }
        for address in addresses
    }
    return {
        "size": size,
        "same_leader_after": states_before == states_after,
        "nodes": nodes,
        **_summary(nodes),
    }


# ---------------------------------------------------------------------- profile


def profile_almost_raft(
    size: int, duration: float, top: int, src: Path | None = None
) -> dict[str, Any]:
    """Run every node (from the source tree ``src`` if given) under cProfile, timed by
    CPU time, for ``duration`` idle seconds.

    The nodes of a :class:`ProcessCluster` are stopped and started again, on the same
    ports and state files, by a wrapper that profiles them once the cluster settled.
    """
    report: dict[str, Any] = {}
    with (
        _nodes_from(src),
        ProcessCluster(size, timings=TIMINGS) as cluster,
        tempfile.TemporaryDirectory(prefix="steady-state-profile-") as tmp,
    ):
        cluster.wait_for_agreed_leader(deadline=30.0)
        for node in cluster.ids:
            cluster.kill(node, signal.SIGTERM)
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for node in cluster.ids:
                host, port = cluster.http[node]
                argv = [
                    sys.executable,
                    "-c",
                    PROFILED_NODE,
                    str(Path(tmp) / f"{node}.prof"),
                    "run",
                    "--config",
                    str(cluster.config_path),
                    "--id",
                    node,
                    "--http",
                    f"{host}:{port}",
                    "--log-format",
                    "json",
                ]
                processes[node] = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            leader, _ = cluster.wait_for_agreed_leader(deadline=30.0, nodes=cluster.ids)
            time.sleep(SETTLE_SECONDS)
            counts0 = _scrape_all(cluster)
            for process in processes.values():
                process.send_signal(signal.SIGUSR1)
            started = time.monotonic()
            time.sleep(duration)
            for process in processes.values():
                process.send_signal(signal.SIGUSR2)
            elapsed = time.monotonic() - started
            counts1 = _scrape_all(cluster)
            time.sleep(1.0)  # let the stats files be written
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                process.wait(timeout=15)
        follower = next(node for node in cluster.ids if node != leader)
        heartbeats = (counts1[leader]["heartbeats_sent"] - counts0[leader]["heartbeats_sent"]) / (
            size - 1
        )
        for role, node in (("leader", leader), ("follower", follower)):
            stats = pstats.Stats(str(Path(tmp) / f"{node}.prof"))
            report[role] = _profile_report(stats, heartbeats, elapsed, top)
    return report


def _profile_report(
    stats: pstats.Stats, heartbeats: float, elapsed: float, top: int
) -> dict[str, Any]:
    """Own CPU time by area and the costliest functions, per heartbeat."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    calls = 0
    for (filename, _line, name), (_cc, ncalls, tottime, _cum, _callers) in raw.items():
        calls += ncalls
        areas[_area(filename, name)] = areas.get(_area(filename, name), 0.0) + tottime
    total = sum(areas.values())
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    return {
        "heartbeats": heartbeats,
        "profiled_cpu_seconds": total,
        "profiled_cpu_percent": total / elapsed * 100,
        "calls_per_heartbeat": calls / heartbeats if heartbeats else float("nan"),
        "us_per_heartbeat_by_area": {
            area: seconds / heartbeats * 1e6
            for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "top": text.getvalue(),
    }


def _area(filename: str, name: str) -> str:
    if "almost_raft" in filename:
        return "almost_raft." + Path(filename).stem
    if "asyncio" in filename:
        return "asyncio." + Path(filename).stem
    if filename == "~":
        # A builtin: socket calls, epoll, deque and heap operations.
        if "socket" in name or "epoll" in name:
            return "system calls (socket, epoll)"
        return "builtins"
    return Path(filename).stem


# ---------------------------------------------------------------------- output


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _node_rows(result: Mapping[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for node, n in sorted(result["nodes"].items(), key=lambda kv: kv[1]["role"] != "leader"):
        rows.append(
            [
                node,
                n["role"],
                n["cpu_percent"],
                n["rss_mib"],
                n.get("rss_after_metrics_mib", "-"),
                n.get("messages_sent_per_s", "-"),
                n.get("messages_received_per_s", "-"),
                n["wakeups_per_s"],
            ]
        )
    return rows


_NODE_HEADER = (
    "node",
    "role",
    "CPU %",
    "RSS MiB",
    "RSS after /metrics",
    "sent/s",
    "received/s",
    "wake-ups/s",
)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }


def _plot(path: Path, results: Mapping[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if "windows" in results:
        figure, axis = plt.subplots(figsize=(6, 4))
        for name in ("this tree", "compared"):
            axis.plot(
                [w["index"] for w in results["windows"]],
                [w[name]["leader_cpu_percent"] for w in results["windows"]],
                "o-",
                label=name,
            )
        axis.set_xlabel("window (both clusters measured at once)")
        axis.set_ylabel("leader CPU, % of one core")
        axis.legend()
    elif "sizes" in results:
        sizes = [r["size"] for r in results["sizes"]]
        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(
            sizes, [r["leader_cpu_percent"] for r in results["sizes"]], "o-", label="leader"
        )
        axes[0].plot(
            sizes, [r["follower_cpu_percent"] for r in results["sizes"]], "o-", label="follower"
        )
        axes[0].set_xlabel("nodes")
        axes[0].set_ylabel("CPU, % of one core")
        axes[0].legend()
        axes[1].plot(sizes, [r["cluster_messages_per_s"] for r in results["sizes"]], "o-")
        axes[1].set_xlabel("nodes")
        axes[1].set_ylabel("messages per second, whole cluster")
    else:
        systems = [("almost-raft", results["almost_raft"])]
        if results.get("pysyncobj"):
            systems.append(("PySyncObj", results["pysyncobj"]))
        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        labels = [name for name, _ in systems]
        xs = range(len(systems))
        axes[0].bar(
            [x - 0.2 for x in xs],
            [s["leader_cpu_percent"] for _, s in systems],
            0.4,
            label="leader",
        )
        axes[0].bar(
            [x + 0.2 for x in xs],
            [s["follower_cpu_percent"] for _, s in systems],
            0.4,
            label="follower (median)",
        )
        axes[0].set_xticks(list(xs), labels)
        axes[0].set_ylabel("CPU, % of one core")
        axes[0].legend()
        rss_labels = [*labels, "bare asyncio", "bare python"]
        rss_values = [s["follower_rss_mib"] for _, s in systems] + [
            results["baselines"]["bare_asyncio_rss_mib"],
            results["baselines"]["bare_python_rss_mib"],
        ]
        axes[1].bar(rss_labels, rss_values)
        axes[1].set_ylabel("RSS, MiB")
    figure.suptitle("Idle cluster, 50 ms heartbeats")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def _write(name: str, results: Mapping[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    png = path.with_suffix(".png")
    if _plot(png, results):
        print(f"wrote {png}")
    else:
        print("no plot: matplotlib is not installed (.venv/bin/pip install matplotlib)")


# ---------------------------------------------------------------------- main


def run_default(size: int, duration: float, compare_src: Path | None) -> None:
    """The 5-node measurement with both baselines (and another source tree's nodes)."""
    results: dict[str, Any] = {"machine": machine(), "duration_s": duration}
    results["timings"] = {
        "heartbeat_ms": TIMINGS.heartbeat_interval_ms,
        "election_timeout_ms": [TIMINGS.election_timeout_ms, TIMINGS.election_timeout_max_ms],
    }
    results["baselines"] = measure_baselines()
    heartbeats_per_s = 1000 / TIMINGS.heartbeat_interval_ms
    results["baselines"] |= measure_echo_floor(heartbeats_per_s, min(duration, 20.0))
    results["baselines"]["asyncio_broadcast_cpu_percent"] = measure_broadcast_floor(
        size - 1, TIMINGS.heartbeat_interval_ms / 1000, min(duration, 20.0)
    )
    if compare_src is not None:
        results["almost_raft_compare"] = {
            "src": str(compare_src),
            **stable(lambda: measure_almost_raft(size, duration, compare_src)),
        }
    results["almost_raft"] = stable(lambda: measure_almost_raft(size, duration))
    if pysyncobj_available():
        results["pysyncobj"] = stable(lambda: measure_pysyncobj(size, duration))
    else:
        results["pysyncobj"] = None
    print(
        f"{size} nodes idle for {duration:g} s, heartbeat {TIMINGS.heartbeat_interval_ms} ms, "
        f"election timeout {TIMINGS.election_timeout_ms}-{TIMINGS.election_timeout_max_ms} ms; "
        f"load average at start {results['machine']['loadavg_at_start'][0]:.2f}"
    )
    ours = results["almost_raft"]
    print(f"\nalmost-raft (leader {ours['leader']}, unchanged: {ours['same_leader_after']})")
    print(_table(_node_rows(ours), _NODE_HEADER))
    other = results.get("almost_raft_compare")
    if other is not None:
        print(f"\nalmost-raft from {other['src']} (leader unchanged: {other['same_leader_after']})")
        print(_table(_node_rows(other), _NODE_HEADER))
    theirs = results["pysyncobj"]
    if theirs is None:
        print("\nPySyncObj: not installed; .venv/bin/pip install pysyncobj to compare")
    else:
        print(f"\nPySyncObj (leader unchanged: {theirs['same_leader_after']})")
        print(_table(_node_rows(theirs), _NODE_HEADER))
    base = results["baselines"]
    print(
        f"\nbare python RSS {base['bare_python_rss_mib']:.1f} MiB, bare asyncio RSS "
        f"{base['bare_asyncio_rss_mib']:.1f} MiB"
    )
    print(
        f"a process that only answers {heartbeats_per_s:g} messages a second (a follower's "
        f"heartbeats): {base['asyncio_echo_cpu_percent']:.2f} % with an asyncio protocol, "
        f"{base['selectors_echo_cpu_percent']:.2f} % with a plain selectors loop; one that "
        f"only sends to {size - 1} peers each heartbeat and reads their answers: "
        f"{base['asyncio_broadcast_cpu_percent']:.2f} % with asyncio"
    )
    rows: list[list[object]] = [
        [
            name,
            result["leader_cpu_percent"],
            result["follower_cpu_percent"],
            result["follower_rss_mib"],
            result["follower_rss_mib"] - base["bare_asyncio_rss_mib"],
            result.get("leader_cpu_ms_per_round", "-"),
            result.get("follower_cpu_us_per_heartbeat", "-"),
        ]
        for name, result in (("almost-raft", ours), ("almost-raft (compared)", other))
        if result is not None
    ]
    if theirs is not None:
        rows.append(
            [
                "PySyncObj",
                theirs["leader_cpu_percent"],
                theirs["follower_cpu_percent"],
                theirs["follower_rss_mib"],
                theirs["follower_rss_mib"] - base["bare_asyncio_rss_mib"],
                "-",
                "-",
            ]
        )
    print()
    print(
        _table(
            rows,
            (
                "",
                "leader CPU %",
                "follower CPU %",
                "follower RSS MiB",
                "RSS - bare asyncio",
                "leader ms/round",
                "follower us/heartbeat",
            ),
        )
    )
    if theirs is not None:
        print(
            f"\ntargets: leader CPU <= {theirs['leader_cpu_percent']:.2f} % and follower "
            f"CPU <= {theirs['follower_cpu_percent']:.2f} % (at most PySyncObj's); "
            f"RSS <= {base['bare_asyncio_rss_mib'] + 4:.1f} MiB (bare asyncio + 4 MiB)"
        )
    _write("steady_state", results)


def run_sizes(sizes: Sequence[int], duration: float) -> None:
    """Leader and follower cost against cluster size."""
    results: dict[str, Any] = {"machine": machine(), "duration_s": duration, "sizes": []}
    rows: list[list[object]] = []
    for size in sizes:
        result = stable(functools.partial(measure_almost_raft, size, duration))
        results["sizes"].append(result)
        rows.append(
            [
                size,
                result["leader_cpu_percent"],
                result["follower_cpu_percent"],
                result["leader_rss_mib"],
                result["follower_rss_mib"],
                result["leader_messages_per_s"],
                result["cluster_messages_per_s"],
                result["same_leader_after"],
            ]
        )
    print(
        f"idle for {duration:g} s per size, heartbeat {TIMINGS.heartbeat_interval_ms} ms; "
        f"load average at start {results['machine']['loadavg_at_start'][0]:.2f}"
    )
    print(
        _table(
            rows,
            (
                "nodes",
                "leader CPU %",
                "follower CPU %",
                "leader RSS",
                "follower RSS",
                "leader msgs/s",
                "cluster msgs/s",
                "same leader",
            ),
        )
    )
    _write("steady_state_sizes", results)


def scheduler_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` so far, all threads, from the scheduler's nanosecond count.

    Finer than the clock ticks of ``/proc/PID/stat``: a 15 s window of a leader is
    a few hundred milliseconds of CPU, which ticks of 10 ms resolve to a few per cent.
    """
    total_ms = 0.0
    for sched in Path(f"/proc/{pid}/task").glob("*/sched"):
        with contextlib.suppress(OSError):
            for line in sched.read_text("ascii").splitlines():
                if line.startswith("se.sum_exec_runtime"):
                    total_ms += float(line.split(":", 1)[1])
    return total_ms / 1000


def run_side_by_side(size: int, duration: float, windows: int, src: Path) -> None:
    """Two clusters at once, one from this tree and one from ``src``, measured over the
    same windows: a change's effect without the drift between runs an hour apart."""
    results: dict[str, Any] = {
        "machine": machine(),
        "src": str(src),
        "window_s": duration,
        "windows": [],
    }
    rows: list[list[object]] = []
    with contextlib.ExitStack() as stack:
        clusters: dict[str, ProcessCluster] = {}
        for name, tree in (("compared", src), ("this tree", None)):
            with _nodes_from(tree):
                clusters[name] = stack.enter_context(ProcessCluster(size, timings=TIMINGS))
        for index in range(windows):
            leaders = {
                name: cluster.wait_for_agreed_leader(deadline=30.0)
                for name, cluster in clusters.items()
            }
            time.sleep(SETTLE_SECONDS)
            pids = {
                name: {node: pid for node in c.ids if (pid := c.pid(node)) is not None}
                for name, c in clusters.items()
            }
            before = {
                name: {node: scheduler_cpu_seconds(pid) for node, pid in nodes.items()}
                for name, nodes in pids.items()
            }
            started = time.monotonic()
            time.sleep(duration)
            elapsed = time.monotonic() - started
            window: dict[str, Any] = {"index": index}
            for name, nodes in pids.items():
                percent = {
                    node: (scheduler_cpu_seconds(pid) - before[name][node]) / elapsed * 100
                    for node, pid in nodes.items()
                }
                leader = leaders[name][0]
                window[name] = {
                    "leader": leader,
                    "same_leader_after": clusters[name].agreed_leader(clusters[name].ids)
                    == leaders[name],
                    "leader_cpu_percent": percent[leader],
                    "follower_cpu_percent": statistics.median(
                        value for node, value in percent.items() if node != leader
                    ),
                }
            results["windows"].append(window)
            ours, theirs = window["this tree"], window["compared"]
            rows.append(
                [
                    index,
                    ours["leader_cpu_percent"],
                    theirs["leader_cpu_percent"],
                    ours["leader_cpu_percent"] / theirs["leader_cpu_percent"],
                    ours["follower_cpu_percent"],
                    theirs["follower_cpu_percent"],
                    ours["same_leader_after"] and theirs["same_leader_after"],
                ]
            )
    held = [
        window
        for window in results["windows"]
        if window["this tree"]["same_leader_after"] and window["compared"]["same_leader_after"]
    ]
    for name in ("this tree", "compared"):
        values = [window[name]["leader_cpu_percent"] for window in held]
        results[f"{name} leader median"] = statistics.median(values) if values else None
    print(
        f"two clusters of {size} side by side, {windows} windows of {duration:g} s; "
        f"compared: {src}; load average at start {results['machine']['loadavg_at_start'][0]:.2f}"
    )
    print(
        _table(
            rows,
            (
                "window",
                "leader CPU %",
                "compared leader %",
                "ratio",
                "follower CPU %",
                "compared follower %",
                "same leaders",
            ),
        )
    )
    print(
        f"leader, median of the windows whose leaders held: "
        f"{_cell(results['this tree leader median'])} % against "
        f"{_cell(results['compared leader median'])} %"
    )
    _write("steady_state_side_by_side", results)


def run_against_pysyncobj(size: int, duration: float, windows: int, src: Path | None) -> None:
    """This tree's cluster (or one from the source tree ``src``) and PySyncObj's at once,
    measured over the same windows from the scheduler's nanosecond count: the target's
    comparison without the drift between one system's window and the other's."""
    if not pysyncobj_available():
        print("pysyncobj is not installed (.venv/bin/pip install pysyncobj)")
        return
    results: dict[str, Any] = {
        "machine": machine(),
        "src": None if src is None else str(src),
        "window_s": duration,
        "windows": [],
    }
    rows: list[list[object]] = []
    with contextlib.ExitStack() as stack:
        with _nodes_from(src):
            ours = stack.enter_context(ProcessCluster(size, timings=TIMINGS))
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pso-")))
        theirs = stack.enter_context(_pysyncobj_cluster(size, directory))
        addresses = list(theirs)
        for index in range(windows):
            leader, _ = ours.wait_for_agreed_leader(deadline=30.0)
            deadline = time.monotonic() + 30.0
            while (
                their_leader := _pysyncobj_leader(_pysyncobj_states(directory, addresses))
            ) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("PySyncObj elected no leader within 30 s")
                time.sleep(0.1)
            time.sleep(SETTLE_SECONDS)
            pids = {("ours", node): ours.pid(node) for node in ours.ids} | {
                ("pysyncobj", address): process.pid for address, process in theirs.items()
            }
            before = {key: scheduler_cpu_seconds(pid) for key, pid in pids.items() if pid}
            started = time.monotonic()
            time.sleep(duration)
            elapsed = time.monotonic() - started
            percent = {
                key: (scheduler_cpu_seconds(pid) - before[key]) / elapsed * 100
                for key, pid in pids.items()
                if pid and key in before
            }
            agreed = ours.agreed_leader(ours.ids)
            their_now = _pysyncobj_leader(_pysyncobj_states(directory, addresses))
            held = agreed is not None and agreed[0] == leader and their_now == their_leader
            window = {
                "index": index,
                "same_leaders": held,
                "leader_cpu_percent": percent[("ours", leader)],
                "follower_cpu_percent": statistics.median(
                    v
                    for (system, node), v in percent.items()
                    if system == "ours" and node != leader
                ),
                "pysyncobj_leader_cpu_percent": percent[("pysyncobj", their_leader)],
                "pysyncobj_follower_cpu_percent": statistics.median(
                    v
                    for (system, node), v in percent.items()
                    if system == "pysyncobj" and node != their_leader
                ),
            }
            results["windows"].append(window)
            rows.append(
                [
                    index,
                    window["leader_cpu_percent"],
                    window["pysyncobj_leader_cpu_percent"],
                    window["leader_cpu_percent"] / window["pysyncobj_leader_cpu_percent"],
                    window["follower_cpu_percent"],
                    window["pysyncobj_follower_cpu_percent"],
                    held,
                ]
            )
    load = results["machine"]["loadavg_at_start"][0]
    print(
        f"{'this tree' if src is None else src} and PySyncObj, {size} nodes each, side by "
        f"side, {windows} windows of {duration:g} s; load average at start {load:.2f}"
    )
    header = (
        "window",
        "leader CPU %",
        "PySyncObj leader %",
        "ratio",
        "follower CPU %",
        "PySyncObj follower %",
        "same leaders",
    )
    print(_table(rows, header))
    _write("steady_state_against_pysyncobj", results)


def run_profile(size: int, duration: float, top: int, src: Path | None) -> None:
    """Print where the leader's and a follower's CPU goes, per heartbeat."""
    report = profile_almost_raft(size, duration, top, src)
    if src is not None:
        print(f"nodes run from {src}")
    for role in ("leader", "follower"):
        entry = report[role]
        print(
            f"\n{role}: {entry['profiled_cpu_percent']:.2f} % of a core while profiled, "
            f"{entry['calls_per_heartbeat']:.0f} Python calls per heartbeat"
            + (" round" if role == "leader" else "")
        )
        print(
            _table(
                [[area, us] for area, us in entry["us_per_heartbeat_by_area"].items() if us >= 1],
                ("own time in", "us per heartbeat (profiled)"),
            )
        )
        print(entry["top"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (
        "steady_state_profile.json" if src is None else "steady_state_profile_compare.json"
    )
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5, help="cluster size (default 5)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    parser.add_argument(
        "--sizes", help="comma-separated cluster sizes to compare instead, e.g. 3,5,7,9,15"
    )
    parser.add_argument("--profile", action="store_true", help="profile the nodes instead")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument(
        "--compare-src",
        type=Path,
        help="also measure (with --profile: instead profile) nodes run from this source "
        "directory, before this tree's, e.g. "
        "an older revision: mkdir /tmp/old && git archive REV src | tar -x -C /tmp/old, "
        "then --compare-src /tmp/old/src",
    )
    parser.add_argument(
        "--side-by-side",
        type=Path,
        metavar="SRC",
        help="instead run a cluster from SRC (a source directory, as for --compare-src) at "
        "the same time as one from this tree, and compare their CPU over the same windows",
    )
    parser.add_argument(
        "--windows", type=int, default=6, help="windows measured by --side-by-side (default 6)"
    )
    parser.add_argument(
        "--against-pysyncobj",
        action="store_true",
        help="instead run this tree's cluster (--compare-src's, if given) and PySyncObj's at "
        "the same time, and compare their CPU over the same windows (--windows of them)",
    )
    args = parser.parse_args()
    if args.against_pysyncobj:
        run_against_pysyncobj(args.nodes, args.duration, args.windows, args.compare_src)
    elif args.side_by_side is not None:
        run_side_by_side(args.nodes, args.duration, args.windows, args.side_by_side)
    elif args.profile:
        run_profile(args.nodes, args.duration, args.top, args.compare_src)
    elif args.sizes:
        run_sizes([int(size) for size in args.sizes.split(",")], args.duration)
    else:
        run_default(args.nodes, args.duration, args.compare_src)


if __name__ == "__main__":
    main()

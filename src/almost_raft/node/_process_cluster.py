"""A local cluster of real ``almost-raft run`` processes, for the demo and the tests.

:class:`ProcessCluster` picks free ports on 127.0.0.1, writes a cluster file and a state
directory into a temporary directory of its own, and starts one ``python -m almost_raft
run`` process per node, each logging JSON lines to ``<directory>/<id>.log`` and serving
``/status`` and ``/metrics``. It can kill, stop, continue and restart nodes, ask them for
their status, and follow their leadership changes in their logs.

Rules
-----
Rule 1 (only what it started). Signals go only to the process ids this object started,
never to a name; :meth:`ProcessCluster.close` removes only the directory it created.

Rule 2 (nothing left behind). ``close()`` ends every process it started (SIGCONT for a
stopped one, SIGTERM, then SIGKILL after a grace period). Use the cluster as a context
manager or call ``close()`` in a ``finally``; an ``atexit`` hook closes any cluster still
open when the interpreter exits, and on Linux each node is also sent SIGTERM by the kernel
if the process that started it dies without closing it.

Rule 3 (one clock). The nodes' log lines carry ``time.monotonic()``, which on one machine
is the same clock in every process, so an event in a node's log can be compared with a
moment measured here, such as the instant a node was killed.

Rule 4 (a node may live elsewhere). With ``host`` a node listens on an address of its own
(its transport, HTTP and admin endpoints), and with ``spawn_prefix`` its command line is
prefixed (``ip netns exec NS``, say, with ``almost_raft.chaos.NamespaceNetwork``). The
prefix must exec the node, so that the process id signalled is the node's own.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from ..store._store import decode_state
from ._node_logs import LeaderEvent, LogFollower, leader_events_in
from ._parent_death import signal_on_parent_death

__all__ = ["ClusterTimings", "LeaderEvent", "ProcessCluster"]

_HOST = "127.0.0.1"
_POLL_INTERVAL = 0.01

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterTimings:
    """The election timings written to the cluster file, in milliseconds.

    ``leader_down_delay_ms`` of ``None`` leaves the key out of the file, so the nodes use
    their default.
    """

    election_timeout_ms: int = 150
    election_timeout_max_ms: int = 300
    heartbeat_interval_ms: int = 50
    message_timeout_ms: int = 100
    leader_down_delay_ms: int | None = None


class ProcessCluster:
    """N ``almost-raft run`` processes (on 127.0.0.1 unless told otherwise), with free ports
    picked at run time.

    Nothing starts until :meth:`start`. Node ids are ``n1`` ... ``nN``.

    Args:
        size: how many nodes.
        timings: the election timings of the cluster file.
        command: if given, every node runs it only while leader (``almost-raft run --
            COMMAND``); its output goes to the node's log file.
        grace: seconds a node gives its command between SIGTERM and SIGKILL.
        cluster_id: the cluster id of the file.
        parent: where to create the temporary directory (default: the system's).
        peer_address: if given, ``peer_address(node, peer)`` is where ``node`` sends to
            ``peer`` (a proxy between them, say), and each node reads a cluster file of
            its own, :meth:`node_config_path`. It is called by :meth:`start` once every
            node's own port is picked (:attr:`addresses`).
        admin: give every node an admin endpoint (:attr:`admin`), for
            ``almost-raft members``.
        host: if given, ``host(node)`` is the address ``node`` listens on (default
            127.0.0.1). Its ports are still picked free on 127.0.0.1 here, which in a
            namespace of its own is as good as any.
        spawn_prefix: if given, ``spawn_prefix(node)`` goes before the node's command
            line; it must exec the rest (Rule 4).

    Raises:
        ValueError: ``size`` is below 1.
    """

    def __init__(
        self,
        size: int,
        *,
        timings: ClusterTimings = ClusterTimings(),
        command: Sequence[str] = (),
        grace: float = 2.0,
        cluster_id: str = "local",
        parent: Path | None = None,
        peer_address: Callable[[str, str], tuple[str, int]] | None = None,
        admin: bool = False,
        host: Callable[[str], str] | None = None,
        spawn_prefix: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got {size}")
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        self.timings = timings
        self.command = tuple(command)
        self.grace = grace
        self.cluster_id = cluster_id
        self._parent = parent
        self._peer_address = peer_address
        self._admin = admin
        self._host = host
        self._spawn_prefix = spawn_prefix
        self.directory: Path | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self.http: dict[str, tuple[str, int]] = {}
        #: Each node's admin endpoint, when the cluster was made with ``admin``.
        self.admin: dict[str, tuple[str, int]] = {}
        # Nodes the cluster file no longer lists (replaced machines).
        self._left_out: set[str] = set()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped: set[str] = set()
        self._logs: dict[str, IO[bytes]] = {}
        self._followers: dict[str, LogFollower] = {}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Write the cluster file and start every node (without waiting for a leader).

        Raises:
            RuntimeError: already started or closed.
            OSError: a process could not be started; the nodes started so far are ended.
        """
        if self.directory is not None or self._closed:
            raise RuntimeError("the cluster was already started")
        _open_clusters.add(self)
        self.directory = Path(tempfile.mkdtemp(prefix="almost-raft-", dir=self._parent))
        try:
            (self.directory / "state").mkdir()
            ports = _free_ports(3 * len(self.ids))
            for index, node in enumerate(self.ids):
                self._place(node, ports[3 * index : 3 * index + 3])
            self.config_path.write_text(self._cluster_file(), encoding="utf-8")
            if self._peer_address is not None:
                for node in self.ids:
                    self.node_config_path(node).write_text(
                        self._cluster_file(node), encoding="utf-8"
                    )
            for node in self.ids:
                self._followers[node] = LogFollower(self.log_path(node))
                self._spawn(node)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End every process this cluster started and remove its directory. Idempotent.

        Each node gets SIGTERM (after SIGCONT if it was stopped) and SIGKILL if it is
        still running after a grace period: the node's own grace for its command, plus a
        little. Nothing else is signalled or removed.
        """
        self._closed = True
        processes = [p for p in self._processes.values() if p.poll() is None]
        for process in processes:
            _signal(process, signal.SIGCONT)
            _signal(process, signal.SIGTERM)
        end = time.monotonic() + self.grace + 3.0
        for process in processes:
            try:
                process.wait(timeout=max(end - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        self._stopped.clear()
        if self.directory is not None and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)
        _open_clusters.discard(self)

    def __enter__(self) -> ProcessCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        """The cluster file."""
        return self._dir / "cluster.toml"

    def node_config_path(self, node: str) -> Path:
        """The cluster file ``node`` runs with: :attr:`config_path`, or its own file
        when ``peer_address`` routes its messages."""
        if self._peer_address is None:
            return self.config_path
        return self._dir / f"cluster-{node}.toml"

    def log_path(self, node: str) -> Path:
        """The file a node's stdout and stderr (JSON log lines) go to, across restarts."""
        return self._dir / f"{node}.log"

    def state_path(self, node: str) -> Path:
        """The node's state file (term and vote)."""
        return self._dir / "state" / f"{node}.state"

    @property
    def _dir(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the cluster is not started")
        return self.directory

    # ------------------------------------------------------------------ processes

    def pid(self, node: str) -> int | None:
        """The process id of ``node`` if it is running (stopped counts as running)."""
        process = self._processes.get(node)
        return process.pid if process is not None and process.poll() is None else None

    def returncode(self, node: str) -> int | None:
        """The exit status of ``node``'s process once it has ended, else ``None``."""
        process = self._processes.get(node)
        return None if process is None else process.poll()

    def running(self) -> list[str]:
        """The nodes whose process is alive, stopped ones included."""
        return [node for node in self.ids if self.pid(node) is not None]

    def live(self) -> list[str]:
        """The nodes whose process is alive and not stopped: those that take part."""
        return [node for node in self.running() if node not in self._stopped]

    def kill(self, node: str, signum: signal.Signals = signal.SIGKILL) -> float:
        """Send ``signum`` to ``node``'s process and, unless it is SIGSTOP or SIGCONT,
        wait for the process to exit.

        Returns:
            ``time.monotonic()`` just before the signal was sent.

        Raises:
            RuntimeError: ``node`` is not running.
        """
        process = self._processes.get(node)
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{node} is not running")
        sent_at = time.monotonic()
        process.send_signal(signum)
        if signum == signal.SIGSTOP:
            self._stopped.add(node)
        elif signum == signal.SIGCONT:
            self._stopped.discard(node)
        else:
            if node in self._stopped:
                # A stopped process acts on SIGTERM only once it runs again.
                process.send_signal(signal.SIGCONT)
                self._stopped.discard(node)
            process.wait(timeout=self.grace + 10.0)
        return sent_at

    def stop(self, node: str) -> float:
        """SIGSTOP ``node``: it keeps its sockets but does nothing. Returns the time sent."""
        return self.kill(node, signal.SIGSTOP)

    def cont(self, node: str) -> float:
        """SIGCONT a stopped ``node``. Returns the time sent."""
        return self.kill(node, signal.SIGCONT)

    def add_node(self, node: str, *, leave_out: Iterable[str] = ()) -> None:
        """Start a new machine ``node`` on fresh ports, as a replacement would be.

        The cluster file is written again listing it (and not ``leave_out``): the file
        the new node starts from, as an operator would write it on the new machine. The
        running nodes never read it again; they learn of ``node`` when it is added
        through the leader (``almost-raft members add``).
        """
        if self._closed or self.directory is None:
            raise RuntimeError("the cluster is not running")
        if node in self.ids:
            raise ValueError(f"{node} is already a node of this cluster")
        ports = _free_ports(3)
        self.ids.append(node)
        self._place(node, ports)
        self._left_out = set(leave_out)
        self.config_path.write_text(self._cluster_file(), encoding="utf-8")
        self._followers[node] = LogFollower(self.log_path(node))
        self._spawn(node)

    def restart(self, node: str) -> None:
        """Start ``node`` again, with the same ports, state file and log file.

        Raises:
            RuntimeError: ``node`` is still running, or the cluster is closed.
        """
        if self._closed:
            raise RuntimeError("the cluster is closed")
        if self.pid(node) is not None:
            raise RuntimeError(f"{node} is still running (pid {self.pid(node)})")
        self._spawn(node)

    def _place(self, node: str, ports: Sequence[int]) -> None:
        """Give ``node`` its address and its three ports (transport, HTTP, admin)."""
        host = _HOST if self._host is None else self._host(node)
        self.addresses[node] = (host, ports[0])
        self.http[node] = (host, ports[1])
        if self._admin:
            self.admin[node] = (host, ports[2])

    def _spawn(self, node: str) -> None:
        log = self._logs.get(node)
        if log is None:
            log = self._logs[node] = self.log_path(node).open("ab")
        host, port = self.http[node]
        prefix = [] if self._spawn_prefix is None else list(self._spawn_prefix(node))
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "almost_raft",
            "run",
            "--config",
            str(self.node_config_path(node)),
            "--id",
            node,
            "--http",
            f"{host}:{port}",
            "--log-format",
            "json",
            "--grace",
            str(self.grace),
        ]
        if self.command:
            argv += ["--", *self.command]
        # A process group of its own keeps a Ctrl-C in the terminal away from the nodes:
        # the cluster ends them in order instead of all of them reacting at once.
        self._processes[node] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            process_group=0,
            # A harness killed without cleaning up must leave no node behind.
            preexec_fn=signal_on_parent_death(signal.SIGTERM),
        )
        self._stopped.discard(node)

    # ------------------------------------------------------------------ observing

    def status(self, node: str, timeout: float = 0.5) -> dict[str, Any] | None:
        """``GET /status`` of ``node``, or ``None`` if it does not answer in ``timeout`` s."""
        body = self._get(node, "/status", timeout)
        if body is None:
            return None
        with contextlib.suppress(ValueError):
            status = json.loads(body)
            if isinstance(status, dict):
                return status
        return None

    def metrics(self, node: str, timeout: float = 0.5) -> str | None:
        """``GET /metrics`` of ``node`` as text, or ``None`` if it does not answer."""
        body = self._get(node, "/metrics", timeout)
        return None if body is None else body.decode("utf-8", "replace")

    def _get(self, node: str, path: str, timeout: float) -> bytes | None:
        host, port = self.http[node]
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        return body if response.status == 200 else None

    def state(self, node: str) -> dict[str, Any] | None:
        """The term and vote in the node's state file (``term``, ``voted_for``), if it exists.

        Raises:
            StateFileError: the file holds no state that can be trusted.
        """
        path = self.state_path(node)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        saved = decode_state(raw, str(path))
        return {"term": saved.term, "voted_for": saved.voted_for}

    def agreed_leader(self, nodes: Iterable[str] | None = None) -> tuple[str, int] | None:
        """``(leader, term)`` if every one of ``nodes`` (default: the live ones) answers
        ``/status`` naming the same leader and term, and that leader, if among them, says
        it is leader; otherwise ``None``."""
        asked = list(self.live() if nodes is None else nodes)
        views = {}
        for node in asked:
            status = self.status(node)
            if status is None:
                return None
            views[node] = status
        seen = {(s.get("leader"), s.get("term")) for s in views.values()}
        if len(seen) != 1:
            return None
        ((leader, term),) = seen
        if not isinstance(leader, str) or not isinstance(term, int):
            return None
        if leader in views and views[leader].get("role") != "leader":
            return None
        return leader, term

    def wait_for_agreed_leader(
        self,
        deadline: float = 15.0,
        *,
        nodes: Iterable[str] | None = None,
        above_term: int = -1,
    ) -> tuple[str, int]:
        """Poll ``/status`` until :meth:`agreed_leader` holds with a term above ``above_term``.

        Args:
            deadline: seconds to wait.
            nodes: whose agreement counts (default: the live nodes, asked anew each poll).

        Returns:
            ``(leader, term)``.

        Raises:
            TimeoutError: no such agreement within ``deadline``; the message shows what
                each node said and the end of its log.
        """
        fixed = None if nodes is None else list(nodes)

        def agreed() -> tuple[str, int] | None:
            found = self.agreed_leader(fixed)
            return found if found is not None and found[1] > above_term else None

        return self.wait_for(agreed, deadline, "all nodes to agree on a leader")

    def wait_for(self, condition: Callable[[], _T | None], deadline: float, what: str) -> _T:
        """Poll ``condition`` until it returns something other than ``None``.

        Raises:
            TimeoutError: it stayed ``None`` for ``deadline`` seconds; the message says
                ``what`` was awaited and describes the cluster.
        """
        end = time.monotonic() + deadline
        while True:
            found = condition()
            if found is not None:
                return found
            if time.monotonic() > end:
                raise TimeoutError(f"waited {deadline:.1f}s for {what}\n{self.describe()}")
            time.sleep(_POLL_INTERVAL)

    def leader_events(self) -> list[LeaderEvent]:
        """The ``leader_changed`` events logged since the last call, oldest first."""
        events = []
        for node, follower in self._followers.items():
            events += leader_events_in(node, follower.read())
        events.sort(key=lambda event: event.monotonic)
        return events

    def describe(self, log_lines: int = 5) -> str:
        """Each node's process state, status and last log lines, for failure messages."""
        parts = []
        for node in self.ids:
            process = self._processes.get(node)
            if process is None:
                state = "never started"
            elif process.poll() is not None:
                state = f"exited with {process.returncode}"
            else:
                state = f"pid {process.pid}" + (" (stopped)" if node in self._stopped else "")
            status = (
                self.status(node, 0.2)
                if state.startswith("pid") and node not in self._stopped
                else None
            )
            summary = (
                "-"
                if status is None
                else f"{status.get('role')} term {status.get('term')} leader {status.get('leader')}"
            )
            parts.append(f"{node}: {state}; {summary}")
            with contextlib.suppress(OSError):
                tail = self.log_path(node).read_text("utf-8", "replace").splitlines()[-log_lines:]
                parts.extend(f"    {line}" for line in tail)
        return "\n".join(parts)

    # ------------------------------------------------------------------ the file

    def _cluster_file(self, reader: str | None = None) -> str:
        """The cluster file; for ``reader``, with its peers at ``peer_address``."""
        t = self.timings
        lines = [
            f"cluster = {json.dumps(self.cluster_id)}",
            'state_dir = "state"',
            "",
            "[election]",
            f"election_timeout_ms = {t.election_timeout_ms}",
            f"election_timeout_max_ms = {t.election_timeout_max_ms}",
            f"heartbeat_interval_ms = {t.heartbeat_interval_ms}",
            f"message_timeout_ms = {t.message_timeout_ms}",
        ]
        if t.leader_down_delay_ms is not None:
            lines.append(f"leader_down_delay_ms = {t.leader_down_delay_ms}")
        for node in self.ids:
            if node in self._left_out:
                continue
            host, port = self.addresses[node]
            if reader is not None and node != reader and self._peer_address is not None:
                host, port = self._peer_address(reader, node)
            lines += [
                "",
                f"[nodes.{node}]",
                f'address = "{host}:{port}"',
                'http = "{}:{}"'.format(*self.http[node]),
            ]
            if node in self.admin:
                lines.append('admin = "{}:{}"'.format(*self.admin[node]))
        return "\n".join(lines) + "\n"


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now.

    All sockets stay bound until every port is picked, so no port is returned twice.
    Another program could still take one before a node binds it; that node then fails to
    start, which its log says.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((_HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


# Strong references: a cluster dropped without close() must still be closed at exit.
_open_clusters: set[ProcessCluster] = set()


@atexit.register
def _close_open_clusters() -> None:
    for cluster in list(_open_clusters):
        cluster.close()

"""A network namespace per node, joined by one forwarder thread that injects faults.

:class:`ProxyNetwork` models TCP in user space; here the nodes' own kernels run TCP (SYN
retransmission, RTOs and their backoff, FIN and RST) and the faults fall on IP packets.
A kernel without ``sch_netem`` (tc's ``netem``) cannot delay packets itself, so the delay
is done in user space: every namespace gets a TUN device whose packets this process reads,
and the forwarder
(``_forwarder.py``) writes each one to its destination's device after the link's delay,
or drops it.

Layout: node ``i`` (from 0) lives in namespace ``almost-raft-<pid>-<serial>-<i>``, whose
``lo`` is up and whose TUN device has ``10.<x>.0.<i + 1>/24``, the whole subnet routed
through it. The harness's own namespace gets one more device, ``10.<x>.0.254``, also
routed into the forwarder but never faulted, so this process can reach the nodes
(``GET /status``) as if it stood beside them. ``x`` is picked so the subnet overlaps no
route of this namespace.

Rules
-----
Rule 1 (only what it made). :meth:`NamespaceNetwork.close` deletes the namespaces it
created and closes its devices (which removes them), on error paths too, and an
``atexit`` hook closes any network left open. It signals no process: whoever started a
process in a namespace ends it (``ProcessCluster`` does). A harness killed with SIGKILL
leaves its namespaces behind: ``ip netns list`` shows them by its pid, and ``ip netns del
NAME`` removes them.

Rule 2 (a process in a namespace is the process). ``ip netns exec NS CMD`` enters the
namespace and then execs ``CMD``, so the process id a caller gets from spawning
:meth:`NamespaceNetwork.exec_prefix` ``+ CMD`` is ``CMD``'s own, and SIGKILL kills it.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import sys
from collections.abc import Sequence
from types import TracebackType

from ._forwarder import Forwarder, PacketStats
from ._proxy import LinkState
from ._tun import NamespaceError, free_subnets, ip, open_tun, unavailable_reason

__all__ = ["NamespaceError", "NamespaceNetwork", "PacketStats"]

Link = tuple[str, str]

_HARNESS = "harness"
_HARNESS_HOST = 254
_PARTITIONED = LinkState(cut=True)
_serials = itertools.count()


class NamespaceNetwork:
    """One network namespace per name, with the kernel's TCP between them and each
    directed link's delay, jitter, loss and partition applied to its IP packets.

    Every link starts faultless. Packets on one link are delivered in the order they were
    sent (a packet's due time is never before the previous one's on its link); each is
    dropped with probability ``loss``, all are dropped while the link is ``cut`` or
    ``stall`` (the same thing at this layer), and the rest arrive ``delay`` plus or minus
    up to ``jitter`` (uniform) later. See the module's documentation for the layout.

    Args:
        names: the nodes, one namespace each (at most 250).
        seed: seeds the losses and delays.

    Use as a context manager, or call :meth:`start` and then :meth:`close` in a
    ``finally``. Needs root, ``/dev/net/tun`` and ``ip`` (iproute2).
    """

    def __init__(self, names: Sequence[str], *, seed: int = 1) -> None:
        self.names = list(names)
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"the names must be distinct and at least one: {self.names}")
        if len(self.names) >= _HARNESS_HOST:
            raise ValueError(f"at most {_HARNESS_HOST - 1} namespaces, got {len(self.names)}")
        self.seed = seed
        serial = next(_serials)
        pid = os.getpid()
        self._namespaces = {
            name: f"almost-raft-{pid}-{serial}-{i}" for i, name in enumerate(self.names)
        }
        # Interface names have at most 15 bytes: the pid in hex, the serial, the index.
        stem = f"ar{pid:x}{serial % 256:02x}"
        self._devices = {name: f"{stem}t{i}" for i, name in enumerate(self.names)}
        self._devices[_HARNESS] = f"{stem}h"
        self._subnet: ipaddress.IPv4Network | None = None
        self._fds: dict[str, int] = {}
        self._created: list[str] = []
        self._forwarder: Forwarder | None = None
        self._closed = False

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why this process cannot make the network (not root, no ``/dev/net/tun``, no
        ``ip``), with what to do; ``None`` if it can."""
        return unavailable_reason()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create the namespaces and devices and start the forwarder.

        Raises:
            NamespaceError: not root, no ``/dev/net/tun`` or no ``ip`` (the message says
                what to do), or an ``ip`` command failed; what was made is removed.
            RuntimeError: already started or closed.
        """
        if self._subnet is not None or self._closed:
            raise RuntimeError("the network was already started")
        reason = unavailable_reason()
        if reason is not None:
            raise NamespaceError(reason)
        _open_networks.add(self)
        try:
            self._subnet = self._pick_subnet()
            for name in self.names:
                self._make_namespace(name)
            self._attach_harness()
            addresses = {name: ipaddress.IPv4Address(self._host(name)).packed for name in self._fds}
            self._forwarder = Forwarder(self._fds, addresses, self.seed)
            self._forwarder.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the forwarder, remove the devices and delete the namespaces. Idempotent.

        Processes still running in a namespace are not signalled; they keep the namespace
        alive, without its name, until they end.
        """
        if self._closed:
            return
        self._closed = True
        if self._forwarder is not None:
            self._forwarder.close()
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        for namespace in self._created:
            try:
                ip("netns", "del", namespace)
            except NamespaceError as exc:
                print(f"almost-raft: {exc}; remove it with `ip netns del`", file=sys.stderr)
        self._created.clear()
        _open_networks.discard(self)

    def __enter__(self) -> NamespaceNetwork:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ where things are

    def address(self, name: str) -> str:
        """The IPv4 address of ``name``'s device, in its namespace.

        Raises:
            KeyError: no such name.
            RuntimeError: not started.
        """
        if name not in self._namespaces:
            raise KeyError(name)
        return self._host(name)

    @property
    def harness_address(self) -> str:
        """This process's own address on the network: the nodes are reachable from here
        through it, with no fault on the way."""
        return self._host(_HARNESS)

    def namespace(self, name: str) -> str:
        """The name of ``name``'s namespace (as ``ip netns list`` shows it)."""
        return self._namespaces[name]

    def exec_prefix(self, name: str) -> list[str]:
        """The command prefix that runs a program inside ``name``'s namespace."""
        return ["ip", "netns", "exec", self._namespaces[name]]

    @property
    def links(self) -> list[Link]:
        """Every directed link between two names."""
        return [(a, b) for a in self.names for b in self.names if a != b]

    # ------------------------------------------------------------------ faults

    def set_state(self, src: str, dst: str, state: LinkState) -> None:
        """Apply ``state`` to the packets sent from now on from ``src`` to ``dst``.

        Thread-safe. ``loss`` and ``drop`` both drop a packet with their probability;
        ``cut`` and ``stall`` both drop every packet.

        Raises:
            KeyError: no such link.
            RuntimeError: not started.
        """
        if src not in self._namespaces or dst not in self._namespaces:
            raise KeyError((src, dst))
        self._running().set_state(src, dst, state)

    def set_all(self, state: LinkState) -> None:
        """Apply ``state`` to every link between two names at once."""
        self._running().set_states(self.links, state)

    def isolate(self, name: str, state: LinkState = _PARTITIONED) -> list[Link]:
        """Apply ``state`` to every link to and from ``name`` at once; return those links."""
        links = [link for link in self.links if name in link]
        self._running().set_states(links, state)
        return links

    def heal_all(self) -> None:
        """Every link between two names carries everything again, with no delay."""
        self.set_all(LinkState())

    def state(self, src: str, dst: str) -> LinkState:
        """What ``src -> dst`` does now."""
        return self._running().state(src, dst)

    def stats(self) -> PacketStats:
        """A copy of the packet counters (forwarded, lost, partitioned, ...)."""
        return self._running().stats()

    # ------------------------------------------------------------------ making it

    def _running(self) -> Forwarder:
        if self._forwarder is None or self._closed:
            raise RuntimeError("the network is not running")
        return self._forwarder

    def _host(self, name: str) -> str:
        if self._subnet is None:
            raise RuntimeError("the network is not started")
        index = _HARNESS_HOST if name == _HARNESS else self.names.index(name) + 1
        return str(self._subnet.network_address + index)

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        # Start from the pid, so parallel runs try different subnets first.
        first = os.getpid() % 250
        candidates = [
            ipaddress.IPv4Network(f"10.{(first + k) % 250 + 1}.0.0/24") for k in range(250)
        ]
        free = free_subnets(candidates)
        if not free:
            raise NamespaceError("every subnet 10.1-250.0.0/24 is in use here")
        return free[0]

    def _make_namespace(self, name: str) -> None:
        device, namespace = self._devices[name], self._namespaces[name]
        self._fds[name] = open_tun(device)
        ip("netns", "add", namespace)
        self._created.append(namespace)
        ip("link", "set", device, "netns", namespace)
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", namespace, "addr", "add", f"{self._host(name)}/24", "dev", device)
        ip("-n", namespace, "link", "set", device, "up")

    def _attach_harness(self) -> None:
        device = self._devices[_HARNESS]
        self._fds[_HARNESS] = open_tun(device)
        ip("addr", "add", f"{self.harness_address}/24", "dev", device)
        ip("link", "set", device, "up")


# Strong references: a network dropped without close() must still be closed at exit.
_open_networks: set[NamespaceNetwork] = set()


@atexit.register
def _close_open_networks() -> None:
    for network in list(_open_networks):
        network.close()

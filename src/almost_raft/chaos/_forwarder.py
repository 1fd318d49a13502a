"""One thread that carries the IP packets between TUN devices, with each link's faults.

Rules
-----
Rule 1 (a link is a pair of endpoints). A packet's link is ``(source, destination)``,
taken from its IPv4 header's addresses; a packet of an unknown address, or one that is not
IPv4 (the kernel's IPv6 router solicitations, say), is thrown away and counted.

Rule 2 (faults are on packets). A link's :class:`LinkState` is applied when a packet is
read: while the link is ``cut`` or ``stall`` every packet is dropped (at the IP layer the
two are the same thing: the kernel's TCP keeps its connections and retransmits with
backoff); otherwise it is dropped with the probability of ``loss`` (and of ``drop``,
which at this layer is one more loss), and the rest are held ``delay`` plus or minus up
to ``jitter`` (uniform) before they are written to the destination's device. Loss hits
every packet alike, SYN, ACK, FIN and data: recovering from it is the kernel's work.
A packet leaves up to about a millisecond after it is due: the selector's timeout is
rounded up to whole milliseconds.

Rule 3 (order is kept). A packet is never delivered before one read earlier on the same
link: its due time is the later of its own draw and the link's last due time. Packets in
flight when a link's state changes keep the fate they were given when read.

Rule 4 (one thread, any caller). The thread owns the descriptors and the queue of due
packets; :meth:`Forwarder.set_state` may be called from any thread and applies to the
packets read after it returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import os
import random
import selectors
import threading
import time
from collections.abc import Iterable, Mapping

from ._proxy import LinkState

__all__ = ["Forwarder", "PacketStats"]

Link = tuple[str, str]

# Packets read from one device before the others get a turn and the due ones go out.
_BATCH = 64
_MAX_PACKET = 65535


@dataclasses.dataclass(slots=True)
class PacketStats:
    """Packet counters of a whole network. Plain ints, only growing.

    Attributes:
        forwarded: packets written to their destination's device.
        lost: packets dropped by a link's ``loss`` (or ``drop``).
        partitioned: packets dropped because their link was cut or stalled.
        unroutable: packets to or from an address no endpoint has, or not IPv4.
        undelivered: packets the destination's device would not take (its queue full,
            or the device gone).
    """

    forwarded: int = 0
    lost: int = 0
    partitioned: int = 0
    unroutable: int = 0
    undelivered: int = 0


class Forwarder:
    """Carries packets between the devices ``fds`` (endpoint name to descriptor).

    Args:
        fds: each endpoint's TUN descriptor, non-blocking; the forwarder does not close them.
        addresses: each endpoint's IPv4 address, as 4 bytes.
        seed: seeds the losses and delays.
    """

    def __init__(self, fds: Mapping[str, int], addresses: Mapping[str, bytes], seed: int) -> None:
        self._fds = dict(fds)
        self._by_address = {address: name for name, address in addresses.items()}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._states: dict[Link, LinkState] = {
            (a, b): LinkState() for a in self._fds for b in self._fds if a != b
        }
        self._last_due: dict[Link, float] = dict.fromkeys(self._states, 0.0)
        self._stats = PacketStats()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="almost-raft namespace forwarder", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (packets still queued are dropped) and close its pipe. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def links(self) -> list[Link]:
        """Every directed link between the endpoints."""
        return list(self._states)

    def set_state(self, src: str, dst: str, state: LinkState) -> None:
        """Apply ``state`` to the packets read from now on on ``src -> dst``.

        Raises:
            KeyError: no such link.
        """
        with self._lock:
            if (src, dst) not in self._states:
                raise KeyError((src, dst))
            self._states[(src, dst)] = state

    def set_states(self, links: Iterable[Link], state: LinkState) -> None:
        """Apply ``state`` to every one of ``links`` at once (under one lock)."""
        links = list(links)
        with self._lock:
            for link in links:
                if link not in self._states:
                    raise KeyError(link)
            for link in links:
                self._states[link] = state

    def state(self, src: str, dst: str) -> LinkState:
        """What ``src -> dst`` does now."""
        with self._lock:
            return self._states[(src, dst)]

    def stats(self) -> PacketStats:
        """A copy of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        queue: list[tuple[float, int, str, bytes]] = []
        sequence = 0
        with selectors.DefaultSelector() as selector:
            for name, fd in self._fds.items():
                selector.register(fd, selectors.EVENT_READ, name)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            while not self._stopping:
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    _, _, dst, packet = heapq.heappop(queue)
                    self._deliver(dst, packet)
                timeout = None if not queue else max(queue[0][0] - now, 0.0)
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 64)
                        continue
                    for _ in range(_BATCH):
                        try:
                            packet = os.read(key.fd, _MAX_PACKET)
                        except OSError:
                            # BlockingIOError: read it all; anything else: the device is gone.
                            break
                        routed = self._route(packet)
                        if routed is not None:
                            due, dst = routed
                            sequence += 1
                            heapq.heappush(queue, (due, sequence, dst, packet))

    def _route(self, packet: bytes) -> tuple[float, str] | None:
        """The due time and destination of ``packet``, or ``None`` if it is dropped."""
        src = dst = None
        if len(packet) >= 20 and packet[0] >> 4 == 4:
            src = self._by_address.get(packet[12:16])
            dst = self._by_address.get(packet[16:20])
        with self._lock:
            if src is None or dst is None or src == dst:
                self._stats.unroutable += 1
                return None
            link = (src, dst)
            state = self._states[link]
            if state.blocked:
                self._stats.partitioned += 1
                return None
            if (state.loss and self._rng.random() < state.loss) or (
                state.drop and self._rng.random() < state.drop
            ):
                self._stats.lost += 1
                return None
        one_way = state.delay + state.jitter * (2 * self._rng.random() - 1)
        due = max(time.monotonic() + max(one_way, 0.0), self._last_due[link])
        self._last_due[link] = due
        return due, dst

    def _deliver(self, dst: str, packet: bytes) -> None:
        try:
            os.write(self._fds[dst], packet)
        except OSError:
            with self._lock:
                self._stats.undelivered += 1
            return
        with self._lock:
            self._stats.forwarded += 1

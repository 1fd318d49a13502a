"""Per-link TCP proxies: the network between real nodes, under the harness's control.

A node sends to a peer only over the connection it dialled itself (see ``transport.tcp``),
so one proxy per *directed* link ``a -> b`` carries everything ``a`` says to ``b`` and
nothing else. ``a`` is told that ``b`` lives at the proxy's port; the proxy dials the real
``b`` for every connection ``a`` opens.

The proxy reads the stream as frames (with the transport's own frame reader), so it can
drop or delay whole messages without corrupting the stream. The first frame of a
connection is the handshake and is never dropped or lost: dropping it would only make
``b`` refuse the connection, a fault of another kind.

Rules
-----
Rule 1 (a cut takes effect at once). Cutting a link aborts its established connections;
while it stays cut, new connections are accepted and their bytes thrown away, as a
partition loses packets, rather than refused, which a node takes as proof that the peer's
process is gone. Healing aborts those black holes, so the sender redials through.

Rule 2 (a stall is a partition as TCP lives it). A stalled link keeps its established
connections open and passes nothing: what is sent waits, as TCP keeps retransmitting it.
At the heal it is delivered at the next retransmission, whose timer doubles from 200 ms
(Linux's minimum) since the first frame that waited, as TCP's backoff would have it; the
sender's own redial is what makes rejoining fast. New connections are black-holed.

Rule 3 (order is kept). Frames leave in the order they came, each no earlier than its
arrival plus the delay drawn for it: ``delay`` give or take up to ``jitter``, and for
each loss (probability ``loss``, again for the retransmission) a retransmission timeout
more. A lost frame is late, not gone, because TCP resends it; ``drop`` throws a frame
away, which TCP never does.

Rule 4 (a refusal gets through). A dial whose upstream refuses (the peer's process is
gone) is reset after a round trip, and the link's listening socket is closed for a
moment, so the sender's next dial is refused as it would be by the peer's own host: the
crash evidence the nodes depend on. When an established connection ends from the
receiver's side, the sender hears of it one delay later.

Rule 5 (one thread). :class:`ProxyNetwork` runs every proxy on an event loop in a
thread of its own; its methods may be called from any other thread and return once the
change is in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from ..transport.tcp._listener import Listener
from ..transport.tcp._wire import DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES, WireError, frame_length

__all__ = ["LinkState", "LinkStats", "ProxyNetwork"]

Address = tuple[str, int]
Link = tuple[str, str]

_HOST = "127.0.0.1"
_CONNECT_TIMEOUT = 1.0
# Linux's minimum retransmission timeout. A lost segment of a sparse stream (one frame in
# flight, no duplicate acknowledgements to trigger a fast retransmit) is resent by the tail
# loss probe, two round trips and this much after it left.
_MIN_RTO = 0.2
_MAX_RTO = 120.0
# A dial's SYN that is lost is sent again after TCP's initial timeout.
_SYN_RETRANSMIT = 1.0
# How long a link's listener stays closed after its upstream refused a dial.
_REFUSING_FOR = 0.1

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class LinkState:
    """What a link does to the frames it carries.

    Attributes:
        cut: nothing gets through, and established connections are aborted.
        drop: the probability that a message frame is thrown away, in ``[0, 1]``.
        delay: seconds each frame is held before it is passed on (one way).
        jitter: each frame's delay is ``delay`` plus or minus up to this many seconds.
        loss: the probability that a frame (or its retransmission) is lost, in
            ``[0, 1)``; a lost frame arrives a retransmission timeout later, and a dial
            whose SYN is lost a second later.
        stall: nothing gets through, but established connections stay open (Rule 2).
    """

    cut: bool = False
    drop: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    stall: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.drop <= 1:
            raise ValueError(f"drop must be in [0, 1], got {self.drop}")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.delay < 0 or not 0 <= self.jitter <= max(self.delay, 0.0):
            raise ValueError(
                f"delay must be >= 0 and jitter in [0, delay], got {self.delay}, {self.jitter}"
            )

    @property
    def blocked(self) -> bool:
        """Whether nothing gets through (cut or stalled)."""
        return self.cut or self.stall

    def retransmit_timeout(self) -> float:
        """How much later a lost frame arrives: Linux's tail loss probe with one segment
        in flight, two round trips plus the minimum retransmission timeout (200 ms)."""
        return _MIN_RTO + 4 * self.delay


@dataclasses.dataclass(slots=True)
class LinkStats:
    """Counters of one link. Plain ints, only growing."""

    connections: int = 0
    forwarded: int = 0
    dropped: int = 0
    lost: int = 0
    refused: int = 0
    blackholed_bytes: int = 0
    connections_cut: int = 0


class _LinkProxy:
    """The proxy of one directed link, living on the network's event loop."""

    def __init__(self, target: Callable[[], Address], rng: random.Random) -> None:
        self._target = target
        self._rng = rng
        self.state = LinkState()
        self.stats = LinkStats()
        self.listener: Listener | None = None
        self._port = 0
        self._live: set[asyncio.StreamWriter] = set()
        self._blackholes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Set while frames may flow; a stalled link clears it until the heal.
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._healed_at = 0.0
        self._reopen: asyncio.TimerHandle | None = None
        self._closed = False

    async def start(self) -> Address:
        self.listener = await Listener.open(_HOST, self._port, self._accepted)
        self._port = self.listener.address[1]
        return self.listener.address

    def set_state(self, state: LinkState) -> None:
        was = self.state
        self.state = state
        if state.cut and not was.cut:
            self.stats.connections_cut += len(self._live)
            for writer in list(self._live):
                writer.transport.abort()
        if was.blocked and not state.blocked:
            for writer in list(self._blackholes):
                writer.transport.abort()
        if state.stall and not was.stall:
            self._flowing.clear()
        elif was.stall and not state.stall:
            self._healed_at = asyncio.get_running_loop().time()
            self._flowing.set()

    async def close(self) -> None:
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        if self.listener is not None:
            self.listener.close()
        for writer in [*self._live, *self._blackholes]:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _one_way(self) -> float:
        state = self.state
        return max(0.0, state.delay + state.jitter * (2 * self._rng.random() - 1))

    def _accepted(self, conn: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        self.stats.connections += 1
        writer: asyncio.StreamWriter | None = None
        upstream: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
            if self.state.blocked:
                await self._blackhole(reader, writer)
                return
            if self.state.loss and self._rng.random() < self.state.loss:
                # The dial's first SYN is lost: TCP sends it again a second later.
                self.stats.lost += 1
                await asyncio.sleep(_SYN_RETRANSMIT)
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    up_reader, upstream = await asyncio.open_connection(*self._target())
            except ConnectionRefusedError:
                await self._refuse(writer)
                return
            except (OSError, TimeoutError):
                # No answer from the peer's host: the sender sees its connection end.
                return
            if self.state.blocked:
                # Cut while the dial was in flight.
                await self._blackhole(reader, writer)
                return
            self._live.add(writer)
            await self._forward(reader, up_reader, upstream, writer)
        except (OSError, asyncio.IncompleteReadError, WireError):
            pass
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    self._live.discard(stream)
                    stream.transport.abort()
            if writer is None:
                conn.close()

    async def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """The peer's host refused: pass that on to the sender (Rule 4)."""
        self.stats.refused += 1
        # The SYN to the peer and its reset back.
        await asyncio.sleep(self._one_way() + self._one_way())
        self._stop_listening()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # A reset, not an orderly close: zero linger.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    def _stop_listening(self) -> None:
        """Close the listener for a moment, so that dials are refused by the kernel."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self._reopen is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._reopen = loop.call_later(_REFUSING_FOR, self._start_listening)

    def _start_listening(self) -> None:
        self._reopen = None
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._listen_again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen_again(self) -> None:
        try:
            self.listener = await Listener.open(_HOST, self._port, self._accepted)
        except OSError:
            # The port is busy for a moment (a connection of ours in TIME_WAIT is not, as
            # the listener reuses the address): try again shortly.
            self._stop_listening()

    async def _blackhole(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._blackholes.add(writer)
        try:
            while data := await reader.read(65536):
                self.stats.blackholed_bytes += len(data)
        finally:
            self._blackholes.discard(writer)

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        up_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        downstream: asyncio.StreamWriter,
    ) -> None:
        """Pass frames on until either side ends; the first frame is never dropped."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read_frames() -> None:
            handshake = True
            last_due = 0.0
            while True:
                header = await reader.readexactly(HEADER_BYTES)
                length = frame_length(header, DEFAULT_MAX_FRAME_BYTES)
                frame = header + await reader.readexactly(length)
                state = self.state
                if not handshake and state.drop and self._rng.random() < state.drop:
                    self.stats.dropped += 1
                    continue
                due = loop.time() + self._one_way()
                while not handshake and state.loss and self._rng.random() < state.loss:
                    self.stats.lost += 1
                    due += state.retransmit_timeout()
                handshake = False
                # TCP delivers in order: a frame never overtakes one sent before it.
                last_due = max(due, last_due)
                queue.put_nowait((last_due, frame))

        async def write_frames() -> None:
            while True:
                due, frame = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not self._flowing.is_set():
                    await self._wait_out_stall(loop.time())
                upstream.write(frame)
                await upstream.drain()
                self.stats.forwarded += 1

        async def watch_receiver() -> None:
            # The receiver never writes on this connection; a read returns when it ends,
            # and the sender hears of that one delay later.
            await up_reader.read(1)
            await asyncio.sleep(self._one_way())

        tasks = [
            asyncio.create_task(read_frames()),
            asyncio.create_task(write_frames()),
            asyncio.create_task(watch_receiver()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # retrieved: an ended connection is not an error

    async def _wait_out_stall(self, first_unacknowledged: float) -> None:
        """Hold a frame through a stall, then until TCP's next retransmission (Rule 2)."""
        await self._flowing.wait()
        loop = asyncio.get_running_loop()
        when, timeout = first_unacknowledged, _MIN_RTO
        while when + timeout < self._healed_at:
            when += timeout
            timeout = min(2 * timeout, _MAX_RTO)
        wait = when + timeout - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


class ProxyNetwork:
    """A proxy for every directed link between ``nodes``, on a thread of its own.

    Args:
        nodes: the node ids.
        target: ``target(node)`` is the real address of ``node``. It is called each time
            a connection to ``node`` is made, so it may change (a restarted node keeps its
            port here, but nothing else needs to know that).
        seed: seeds the choice of dropped and lost frames and of each frame's delay.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, nodes: Iterable[str], target: Callable[[str], Address], seed: int) -> None:
        self.nodes = list(nodes)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="almost-raft chaos proxies", daemon=True
        )
        self._thread.start()
        rng = random.Random(seed)
        self._proxies: dict[Link, _LinkProxy] = {}
        self.addresses: dict[Link, Address] = {}
        try:
            for src in self.nodes:
                for dst in self.nodes:
                    if src != dst:
                        proxy = _LinkProxy(
                            functools.partial(target, dst), random.Random(rng.random())
                        )
                        self._proxies[(src, dst)] = proxy
                        self.addresses[(src, dst)] = self._call(proxy.start())
        except BaseException:
            self.close()
            raise
        self._closed = False

    @property
    def links(self) -> list[Link]:
        """Every directed link, ``(sender, receiver)``."""
        return list(self._proxies)

    def address(self, src: str, dst: str) -> Address:
        """Where ``src`` must send to reach ``dst`` through the proxy."""
        return self.addresses[(src, dst)]

    def set_state(self, src: str, dst: str, state: LinkState) -> None:
        """Make the link ``src -> dst`` behave as ``state`` from now on.

        Raises:
            KeyError: no such link.
        """
        proxy = self._proxies[(src, dst)]
        self._call(self._set(proxy, state))

    def state(self, src: str, dst: str) -> LinkState:
        """What the link ``src -> dst`` does now."""
        return self._proxies[(src, dst)].state

    def heal_all(self) -> None:
        """Every link carries everything again, at once."""
        for src, dst in self._proxies:
            self.set_state(src, dst, LinkState())

    def stats(self) -> dict[Link, LinkStats]:
        """A copy of each link's counters."""
        return {link: dataclasses.replace(p.stats) for link, p in self._proxies.items()}

    def close(self) -> None:
        """Close every proxy and connection and end the thread. Idempotent."""
        if getattr(self, "_closed", False) or self._loop.is_closed():
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> ProxyNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _set(self, proxy: _LinkProxy, state: LinkState) -> None:
        proxy.set_state(state)

    async def _close_all(self) -> None:
        await asyncio.gather(*(proxy.close() for proxy in self._proxies.values()))

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

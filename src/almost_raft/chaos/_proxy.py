"""Per-link TCP proxies: the network between real nodes, under the harness's control.

A node sends to a peer only over the connection it dialled itself (see ``_tcp``), so one
proxy per *directed* link ``a -> b`` carries everything ``a`` says to ``b`` and nothing
else. ``a`` is told that ``b`` lives at the proxy's port; the proxy dials the real ``b``
for every connection ``a`` opens.

The proxy reads the stream as frames (4-byte big-endian length, then the body), so it
can drop or delay whole messages without corrupting the stream. The first frame of a
connection is the handshake and always passes: dropping it would only make ``b`` refuse
the connection, a fault of another kind.

Rules
-----
Rule 1 (a cut takes effect at once). Cutting a link aborts its established connections;
while it stays cut, new connections are accepted and their bytes thrown away, as a
partition loses packets, rather than refused, which a node takes as proof that the peer's
process is gone. Healing aborts those black holes, so the sender redials through.

Rule 2 (order is kept). Delayed frames leave in the order they came, each no earlier
than its arrival plus the delay in force when it arrived.

Rule 3 (one thread). :class:`ProxyNetwork` runs every proxy on an event loop in a
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

__all__ = ["LinkState", "LinkStats", "ProxyNetwork"]

Address = tuple[str, int]
Link = tuple[str, str]

_HOST = "127.0.0.1"
_HEADER = struct.Struct(">I")
# Election frames are a few dozen bytes; anything this large is not ours to carry.
_MAX_FRAME_BYTES = 1 << 20
_CONNECT_TIMEOUT = 1.0

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class LinkState:
    """What a link does to the frames it carries.

    Attributes:
        cut: nothing gets through.
        drop: the probability that a message frame is thrown away, in ``[0, 1]``.
        delay: seconds each message frame is held before it is passed on.
    """

    cut: bool = False
    drop: float = 0.0
    delay: float = 0.0


@dataclasses.dataclass(slots=True)
class LinkStats:
    """Counters of one link. Plain ints, only growing."""

    connections: int = 0
    forwarded: int = 0
    dropped: int = 0
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
        self._live: set[asyncio.StreamWriter] = set()
        self._blackholes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Address:
        self.listener = await Listener.open(_HOST, 0, self._accepted)
        return self.listener.address

    def set_state(self, state: LinkState) -> None:
        was_cut = self.state.cut
        self.state = state
        if state.cut and not was_cut:
            self.stats.connections_cut += len(self._live)
            for writer in list(self._live):
                writer.transport.abort()
        elif was_cut and not state.cut:
            for writer in list(self._blackholes):
                writer.transport.abort()

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for writer in [*self._live, *self._blackholes]:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

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
            if self.state.cut:
                await self._blackhole(reader, writer)
                return
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    up_reader, upstream = await asyncio.open_connection(*self._target())
            except (OSError, TimeoutError):
                # The peer is down: the sender sees its connection end and redials.
                return
            if self.state.cut:
                # Cut while the dial was in flight.
                await self._blackhole(reader, writer)
                return
            self._live.add(writer)
            await self._forward(reader, up_reader, upstream)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    self._live.discard(stream)
                    stream.transport.abort()
            if writer is None:
                conn.close()

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
    ) -> None:
        """Pass frames on until either side ends; the first frame is never dropped."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        handshake = True

        async def read_frames() -> None:
            nonlocal handshake
            while True:
                header = await reader.readexactly(_HEADER.size)
                (length,) = _HEADER.unpack(header)
                if length > _MAX_FRAME_BYTES:
                    return
                frame = header + await reader.readexactly(length)
                state = self.state
                if not handshake and state.drop and self._rng.random() < state.drop:
                    self.stats.dropped += 1
                    continue
                delay = 0.0 if handshake else state.delay
                handshake = False
                queue.put_nowait((loop.time() + delay, frame))

        async def write_frames() -> None:
            while True:
                due, frame = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                upstream.write(frame)
                await upstream.drain()
                self.stats.forwarded += 1

        # The receiver never writes on this connection; a read returns when it closes it.
        tasks = [
            asyncio.create_task(read_frames()),
            asyncio.create_task(write_frames()),
            asyncio.create_task(up_reader.read(1)),
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


class ProxyNetwork:
    """A proxy for every directed link between ``nodes``, on a thread of its own.

    Args:
        nodes: the node ids.
        target: ``target(node)`` is the real address of ``node``. It is called each time
            a connection to ``node`` is made, so it may change (a restarted node keeps its
            port here, but nothing else needs to know that).
        seed: seeds the choice of dropped frames.

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

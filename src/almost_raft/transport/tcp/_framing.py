"""One TCP or TLS connection that carries length-prefixed frames, as an asyncio Protocol.

Why a Protocol for the whole life of a connection, and not streams for the handshake
handed over to a Protocol with ``transport.set_protocol()``: a StreamReader's buffered
bytes (those that arrived with the handshake) can only be taken back through its private
buffer, and a flow-control pause that the stream protocol saw is not announced again to
the protocol that replaces it, so the new owner could not tell whether the transport is
paused. One protocol from ``connection_made`` to ``connection_lost`` owns both, and the
handshake still reads like the stream code it replaced: :meth:`read_frame` is awaited,
:meth:`write` and :meth:`drain` answer.

Theory of operation
-------------------
A connection lives in two phases.

1. Handshake. Bytes are kept in one buffer and the owner awaits :meth:`read_frame` for
   each handshake frame. Reading pauses while more than a whole frame waits unread, so
   a peer cannot make the buffer grow before it is trusted.
2. Then one of two. :meth:`receive` (inbound): ``data_received`` cuts every complete
   frame out of what arrived, frames that came with the handshake first, and hands each
   to a callback at once; nothing awaits per frame. :meth:`send_only` (outbound): the
   peer has nothing to say on this connection, so any byte from it ends it.

Rules
-----
Rule 1 (size first). A frame's 4-byte header is checked against the limit as soon as it
is complete, before any of the body is kept; an oversized frame ends the connection.

Rule 2 (a refusal ends the connection). Whatever the frame callback refuses (it raises
:class:`WireError`) aborts the connection at once; no later frame of it is looked at.

Rule 3 (the writer knows when to stop). ``pause_writing``/``resume_writing`` keep
:attr:`writable` current, and a connection whose peer leaves it paused for longer than
``write_timeout`` is aborted: its peer stopped reading.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

from ._wire import HEADER_BYTES, WireError, frame_length

__all__ = ["FramedConnection"]

# What one read takes from the socket at most. A frame is a few dozen bytes; asyncio's
# own reads ask for 256 KiB, a fresh bytes object each, which glibc serves by mmap()
# (three system calls a read) unless an earlier free happened to raise its threshold.
_READ_BYTES = 4096
# The frame header, as _wire reads it.
_HEADER = struct.Struct(">I")


class FramedConnection(asyncio.BufferedProtocol):
    """A framed connection: awaitable frames during the handshake, callbacks after it.

    Build one per connection and pass ``lambda: connection`` to ``create_connection`` or
    ``connect_accepted_socket``.

    Args:
        max_frame_bytes: the largest frame body accepted.
        write_timeout: seconds the connection may stay paused by flow control before it
            is aborted; None for no limit.
        on_lost: called once, from ``connection_lost``, with this connection.

    Attributes:
        transport: the asyncio transport, once connected.
        reason: why the connection ended or is ending, for the log; None while it is up
            or when nothing more is known than that it closed.
        on_resume: called when flow control lets writes go again.
        writable: whether a write now goes out: connected, not ending, not paused.
    """

    def __init__(
        self,
        max_frame_bytes: int,
        *,
        write_timeout: float | None = None,
        on_lost: Callable[[FramedConnection], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_frame_bytes = max_frame_bytes
        self._write_timeout = write_timeout
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.reason: BaseException | None = None
        self.on_resume: Callable[[], None] | None = None
        self._buffer = bytearray()
        # How many bytes the buffer needs before another frame can be complete.
        self._needed = HEADER_BYTES
        self._reading_paused = False
        self._paused = False
        self._pause_timer: asyncio.TimerHandle | None = None
        # Ending: aborted by us, or the peer stopped writing, or the connection is gone.
        self._closing = False
        # Aborted by us: nothing more it sent is looked at.
        self._aborted = False
        self._lost = self._loop.create_future()
        # The handshake's one waiter, for a frame or for writes to resume.
        self._waiter: asyncio.Future[None] | None = None
        self._on_frame: Callable[[bytes], None] | None = None
        self._on_refused: Callable[[WireError], None] | None = None
        self._send_only = False
        # Kept current by every change of its three conditions (_update_writable), for a
        # sender that asks before every write.
        self.writable = False
        # Where each read lands (see _READ_BYTES); made by the first read.
        self._read_buffer: memoryview | None = None

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """Whether the connection ended or is ending."""
        return self._closing

    @property
    def lost(self) -> bool:
        """Whether the connection is gone (``connection_lost`` ran)."""
        return self._lost.done()

    @property
    def ended_by_peer(self) -> bool:
        """Whether the connection is gone and the other side ended it: the peer closed
        it, or its host reset it. Not when this side aborted it, nor when this side's
        kernel gave up on unacknowledged data (``TCP_USER_TIMEOUT``)."""
        return self._lost.done() and not self._aborted and not isinstance(self.reason, TimeoutError)

    @property
    def unsent(self) -> int:
        """Bytes written that the kernel has not taken yet (0 once the connection ended)."""
        if self.transport is None or self._lost.done():
            return 0
        return self.transport.get_write_buffer_size()

    def hold_until_sent(self) -> None:
        """From now on, hold writes back until everything written has gone to the kernel.

        With both flow-control marks at zero, asyncio pauses this protocol while any byte
        waits and resumes it (``on_resume``) only once none does: that resume is the
        signal that the connection has flushed, with no timer to poll.
        """
        if self.transport is not None and not self._lost.done():
            self.transport.set_write_buffer_limits(high=0, low=0)

    def abort(self, reason: BaseException | None = None) -> None:
        """End the connection now, discarding unsent data. Idempotent.

        ``reason``, if given and none is known yet, is what :attr:`reason` reports.
        """
        if self.reason is None:
            self.reason = reason
        self._closing = self._aborted = True
        self.writable = False
        if self.transport is not None and not self._lost.done():
            self.transport.abort()

    async def wait_closed(self) -> None:
        """Return once the connection's socket is closed (``connection_lost`` ran)."""
        if self.transport is not None:
            await asyncio.shield(self._lost)

    # ------------------------------------------------------------------ handshake phase

    async def read_frame(self) -> bytes:
        """Return the next frame's body, while the handshake lasts.

        Raises:
            WireError: ``OVERSIZED``: the frame's header announces more than the limit.
            ConnectionError: the connection ended before a whole frame arrived.
        """
        while True:
            # Frames the peer sent before it closed still count; none after we aborted.
            body = None if self._aborted else self._next_frame()
            if body is not None:
                return body
            if self._closing:
                raise ConnectionResetError("the connection closed during the handshake")
            await self._wait()

    def write(self, data: bytes) -> None:
        """Send ``data`` as it is (whole frames); dropped once the connection is ending."""
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while flow control holds writes back.

        Raises:
            ConnectionError: the connection ended.
        """
        while self._paused and not self._closing:
            await self._wait()
        if self._closing:
            raise ConnectionResetError("the connection closed during the handshake")

    # ------------------------------------------------------------------ after the handshake

    def receive(
        self, on_frame: Callable[[bytes], None], on_refused: Callable[[WireError], None]
    ) -> None:
        """From now on, hand each frame's body to ``on_frame`` as soon as it is complete.

        Frames that arrived with the handshake go first, before this returns, even if
        the peer has closed the connection since: it sent them before it closed. When
        ``on_frame`` raises :class:`WireError`, or a frame is oversized, ``on_refused``
        gets the error and the connection is aborted.
        """
        self._on_frame = on_frame
        self._on_refused = on_refused
        self._resume_reading()
        if self._buffer and not self._aborted:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._needed = HEADER_BYTES
            self._cut(data)

    def send_only(self) -> None:
        """From now on, treat any byte from the peer as the end of the connection."""
        self._send_only = True
        self._resume_reading()
        if self._buffer:
            self._wrote_on_send_only()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._update_writable()

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._read_buffer
        if buffer is None:
            buffer = self._read_buffer = memoryview(bytearray(_READ_BYTES))
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        buffer = self._read_buffer
        assert buffer is not None, "asyncio reads into the buffer get_buffer() gave"
        on_frame = self._on_frame
        if on_frame is not None and not self._closing:
            if not self._buffer and nbytes >= HEADER_BYTES:
                (length,) = _HEADER.unpack_from(buffer)
                if length <= self._max_frame_bytes and HEADER_BYTES + length == nbytes:
                    # Exactly one whole frame and nothing kept from before, as a steady
                    # round reads: what _cut() does, without its loop and one copy.
                    try:
                        on_frame(buffer[HEADER_BYTES:nbytes].tobytes())
                    except WireError as exc:
                        self._refuse(exc)
                    return
            # data_received's common case, one call shorter.
            self._cut(buffer[:nbytes].tobytes())
        else:
            self.data_received(buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._on_frame is not None:
            self._cut(data)
        elif self._send_only:
            self._wrote_on_send_only()
        else:
            self._buffer += data
            # Room for one whole frame, and no more, before the handshake reads it.
            if len(self._buffer) > HEADER_BYTES + self._max_frame_bytes:
                self._reading_paused = True
                cast(asyncio.Transport, self.transport).pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        # Neither side ever half-closes: the end of the peer's writing ends the connection.
        self._closing = True
        self.writable = False
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.writable = False
        if self.reason is None:
            self.reason = exc or ConnectionResetError("the peer closed the connection")
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        self._wake()
        if not self._lost.done():
            self._lost.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self)

    def pause_writing(self) -> None:
        self._paused = True
        self.writable = False
        if self._write_timeout is not None:
            self._pause_timer = self._loop.call_later(self._write_timeout, self._stuck)

    def resume_writing(self) -> None:
        self._paused = False
        self._update_writable()
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        self._wake()
        if self.on_resume is not None and not self._closing:
            self.on_resume()

    # ------------------------------------------------------------------ internals

    def _cut(self, data: bytes) -> None:
        """Hand every complete frame in the buffer and ``data`` to the frame callback."""
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._needed:
                return
            data = bytes(buffer)
            buffer.clear()
        on_frame = self._on_frame
        assert on_frame is not None
        size = len(data)
        offset = 0
        limit = self._max_frame_bytes
        try:
            while size - offset >= HEADER_BYTES:
                # frame_length(), inline for every frame; it raises for the oversized.
                (length,) = _HEADER.unpack_from(data, offset)
                if length > limit:
                    frame_length(data, limit, offset)
                end = offset + HEADER_BYTES + length
                if end > size:
                    break
                on_frame(data[offset + HEADER_BYTES : end])
                offset = end
                if self._aborted:
                    return
        except WireError as exc:
            self._refuse(exc)
            return
        if offset < size:
            rest = memoryview(data)[offset:]
            buffer += rest
            # A partial header needs the rest of it; a partial body, all of its frame
            # (whose header was checked against the limit in the loop above).
            self._needed = (
                HEADER_BYTES + frame_length(rest, self._max_frame_bytes)
                if len(rest) >= HEADER_BYTES
                else HEADER_BYTES
            )
        else:
            self._needed = HEADER_BYTES

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < HEADER_BYTES:
            return None
        end = HEADER_BYTES + frame_length(buffer, self._max_frame_bytes)
        if len(buffer) < end:
            return None
        body = bytes(buffer[HEADER_BYTES:end])
        del buffer[:end]
        if len(buffer) <= HEADER_BYTES + self._max_frame_bytes:
            self._resume_reading()
        return body

    def _update_writable(self) -> None:
        self.writable = self.transport is not None and not self._paused and not self._closing

    def _refuse(self, exc: WireError) -> None:
        self.abort(exc)
        if self._on_refused is not None:
            self._on_refused(exc)

    def _wrote_on_send_only(self) -> None:
        self._buffer.clear()
        self.abort(ConnectionResetError("the peer wrote on a send-only connection"))

    def _stuck(self) -> None:
        self._pause_timer = None
        self.abort(TimeoutError(f"the peer read nothing for {self._write_timeout} s"))

    def _resume_reading(self) -> None:
        if self._reading_paused and not self._closing:
            self._reading_paused = False
            cast(asyncio.Transport, self.transport).resume_reading()

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

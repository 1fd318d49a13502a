"""The sending half of the TCP transport: one connection to each peer, dialled by us.

Theory of operation
-------------------
A message for a peer whose connection is up and not held back by flow control is
written to the socket at once, by the caller of :meth:`PeerLink.send`: no task, no
queue, no wake-up. Otherwise it waits in the peer's bounded queue (the oldest dropped
when it is full) and is written when the connection comes up or resumes.

A dialler task per peer does what takes time: it connects as soon as the transport
starts, writes the handshake (and proves the secret), and then only waits for the
connection to end, to redial with exponential backoff and jitter. Every peer is dialled
whether or not anything waits for it, so the first message of an election (from one
follower to another, which exchange nothing while a leader is up) does not wait for a
connect and a handshake: that alone took several milliseconds per election.

The first redial after an established connection broke goes out at once: it is the probe
that tells a dead process (its host refuses the connection:
:meth:`Inbox.peer_unreachable`) from a blip (it reconnects). The break itself, when the
peer's side ended the connection, is told first (:meth:`Inbox.peer_disconnected`), as
the receiving half tells of the peer's own connection ending. A process being killed can
still complete a probe's connect from its listening socket's backlog and reset it a
moment later; a probe connection that dies that young is probed again at once, a few
times at most, instead of waiting a backoff.

A peer that is no longer a member (removed from the configuration) is dialled only *on
demand*: its connection, if up, is kept, but once it ends it is redialled only when a
message waits for it, such as the notice that tells a member removed while it was down
that it was removed. A machine that left for good is then not dialled for ever.

A connection is also given up when what it asks goes unanswered for
``answer_timeout`` (:class:`AnswerWatch`, looked at by one timer per limit while the
connection asks, none while it does not), and the kernel is told the same limit for
unacknowledged data (``TCP_USER_TIMEOUT``, on Linux): after a partition heals, a fresh
connection gets through at once, where the old one would wait out TCP's retransmission
backoff. While a peer cannot be reached, a dial keeps a fresh SYN in flight: a new
attempt starts every spacing (from the measured connect time) while the earlier ones go
on, so a lost SYN costs a fraction of a second rather than the kernel's one-second
retransmission, and a healed partition is crossed within one spacing. Every decision
about redialling is a pure function of :mod:`._redial`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Callable

from .._interface import Inbox
from ._framing import FramedConnection
from ._handshake_frames import Handshake, encode_handshake
from ._log_limit import LimitedWarnings
from ._metrics import ConnectFailure, TcpMetrics
from ._redial import (
    ANSWERED_KINDS,
    QUICK_PROBES,
    AnswerWatch,
    Verdict,
    after_connection,
    backoff_delay,
    dial_spacing,
    next_connect_estimate,
)
from ._settings import Address, TcpSettings
from ._socket_tuning import tune_sent
from ._tls import require_certificate_name
from ._wire import PROTOCOL_VERSION, FrameProblem, WireError

__all__ = ["Peer", "PeerLink", "backoff_delay"]

logger = logging.getLogger("almost_raft.tcp")


class Peer:
    """What the transport keeps per peer: where it is, and what waits to go there."""

    __slots__ = (
        "address",
        "answers",
        "asked",
        "broke",
        "connect_estimate",
        "connection",
        "dialler",
        "dialling",
        "failing",
        "heard",
        "node_id",
        "on_demand",
        "queue",
        "wanted",
    )

    def __init__(self, node_id: str, address: Address) -> None:
        self.node_id = node_id
        self.address = address
        # (message kind, frame) pairs waiting for a connection, oldest first.
        self.queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self.dialler: asyncio.Task[None] | None = None
        # A dial is under way: what is queued may still leave on the connection it makes.
        self.dialling = False
        # The connection, once its handshake is done; None while there is none.
        self.connection: FramedConnection | None = None
        # Only the first failure of a run is logged above debug level.
        self.failing = False
        # An established connection just broke; the next dial is the probe that tells a
        # dead process (refused) from a blip (reconnects).
        self.broke = False
        # Frames written that the peer answers (ANSWERED_KINDS), and frames heard from the
        # peer on any of its connections: what tells a connection that still carries
        # from one that a partition swallows.
        self.asked = 0
        self.heard = 0
        # The current connection's watch on its answers; None while there is none.
        self.answers: AnswerWatch | None = None
        # The running estimate of a connect's duration, which spaces a dial's attempts.
        self.connect_estimate: float | None = None
        # Dialled only while a message waits for it (a peer that is no longer a member).
        self.on_demand = False
        # Set when a message is queued for an on-demand peer, or it stops being one.
        self.wanted = asyncio.Event()


#: How a refusal waits for the peer's own connection to end before it is taken as
#: evidence: a dead process's sockets all close at once, so first a few polls a couple of
#: milliseconds apart; but the end of one of them may be a lost FIN, which its kernel
#: sends again a retransmission timeout later, so then polls further apart, for
#: ``answer_timeout`` in all (this many seconds without one).
_BOTH_WAYS_WAIT = (0.002, 10)
_BOTH_WAYS_SLOW_STEP = 0.01
_BOTH_WAYS_LIMIT = 0.3


class PeerLink:
    """Dials peers and writes their messages.

    Args:
        node_id: this node's id, sent in every handshake.
        inbox: told when a refused redial shows a peer's process is gone.
        settings: the transport's settings.
        metrics: the transport's counters, shared with the receiving half.
        rng: the source of the backoff jitter.
    """

    def __init__(
        self,
        node_id: str,
        inbox: Inbox,
        settings: TcpSettings,
        metrics: TcpMetrics,
        rng: random.Random,
        hears_from: Callable[[str], bool] | None = None,
    ) -> None:
        self._node_id = node_id
        self._inbox = inbox
        # Whether a peer's own connection to this node is open: a refusal is evidence
        # of a dead process only once that direction is gone too.
        self._hears_from = hears_from
        self._settings = settings
        self._metrics = metrics
        self._rng = rng
        self._refusals = LimitedWarnings(logger)
        # Every dialler task, including any still ending after its peer moved.
        self._diallers: set[asyncio.Task[None]] = set()
        # Set whenever what waits for a peer may have changed for good: its queue emptied
        # into its connection, its connection flushed or ended, a dial ended. close()
        # waits on it to flush.
        self.changed = asyncio.Event()

    # ------------------------------------------------------------------ sending

    def send(self, peer: Peer, kind: str, frame: bytes) -> None:
        """Write ``frame`` to ``peer``'s connection now, or queue it; never waits."""
        connection = peer.connection
        if connection is not None and connection.writable and not peer.queue:
            # connection.write() and _wrote(), inline: every message of every round.
            # Writable means connected and not ending, what write() checks.
            transport = connection.transport
            assert transport is not None
            transport.write(frame)
            sent = self._metrics.sent
            setattr(sent, kind, getattr(sent, kind) + 1)
            if kind in ANSWERED_KINDS:
                peer.asked += 1
                answers = peer.answers
                if answers is not None and not answers.armed:
                    self._arm(peer, connection, answers)
            return
        queue = peer.queue
        if len(queue) >= self._settings.queue_size:
            queue.popleft()
            self._metrics.dropped_queue_full += 1
        queue.append((kind, frame))
        if connection is not None and connection.writable:
            self._flush(peer)
        elif peer.on_demand:
            peer.wanted.set()

    def _flush(self, peer: Peer) -> None:
        """Write what waits for ``peer`` until its queue is empty or flow control stops it."""
        connection = peer.connection
        if connection is None:
            return
        queue = peer.queue
        while queue and connection.writable:
            kind, frame = queue.popleft()
            connection.write(frame)
            self._wrote(peer, connection, kind)
        if not queue:
            self.changed.set()

    def _wrote(self, peer: Peer, connection: FramedConnection, kind: str) -> None:
        self._metrics.sent.add(kind)
        if kind not in ANSWERED_KINDS:
            return
        peer.asked += 1
        answers = peer.answers
        if answers is not None and not answers.armed:
            self._arm(peer, connection, answers)

    def _arm(self, peer: Peer, connection: FramedConnection, answers: AnswerWatch) -> None:
        """An asking write while no look is due: schedule one, ``answer_timeout`` later."""
        limit = self._settings.answer_timeout
        if limit is not None and answers.arm(peer.asked, peer.heard):
            # One timer per limit while the connection asks, none while it does not.
            asyncio.get_running_loop().call_later(limit, self._look, peer, connection, limit)

    def _look(self, peer: Peer, connection: FramedConnection, limit: float) -> None:
        """``limit`` after an unanswered ask: end the connection if nothing came back."""
        answers = peer.answers
        if peer.connection is not connection or answers is None or connection.closed:
            return
        verdict = answers.look(peer.asked, peer.heard)
        if verdict is Verdict.AGAIN:
            asyncio.get_running_loop().call_later(limit, self._look, peer, connection, limit)
        elif verdict is Verdict.UNANSWERED:
            self._metrics.unanswered += 1
            connection.abort(TimeoutError(f"no answer from the peer for {limit} s"))

    # ------------------------------------------------------------------ diallers

    def start(self, peer: Peer) -> None:
        """Start ``peer``'s dialler; it dials at once and keeps the connection up."""
        task = asyncio.get_running_loop().create_task(
            self._run(peer), name=f"almost-raft tcp sender {self._node_id}->{peer.node_id}"
        )
        self._diallers.add(task)
        task.add_done_callback(self._dialler_done)
        peer.dialler = task
        # It dials as soon as it runs: what is sent before then waits for that dial.
        peer.dialling = True

    def set_on_demand(self, peer: Peer, on_demand: bool) -> None:
        """Dial ``peer`` only while a message waits for it, or again all the time."""
        peer.on_demand = on_demand
        if not on_demand:
            peer.wanted.set()

    def stop(self, peer: Peer) -> None:
        """Stop ``peer``'s dialler, which closes its connection; its queue stays."""
        peer.connection = None
        peer.dialling = False
        if peer.dialler is not None:
            peer.dialler.cancel()
            peer.dialler = None

    async def close(self) -> None:
        """Stop every dialler and wait until their connections are closed."""
        for task in self._diallers:
            task.cancel()
        if self._diallers:
            # wait(), not gather(): if close() itself is cancelled, the tasks still end.
            await asyncio.wait(set(self._diallers))

    def _dialler_done(self, task: asyncio.Task[None]) -> None:
        self._diallers.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s: %s failed", self._node_id, task.get_name(), exc_info=exc)

    async def _run(self, peer: Peer) -> None:
        """Run ``peer``'s dialler until it is stopped, whatever goes wrong in it.

        A dialler that died would leave the peer unreached for good, a partition of
        this node's own making that no heal ends; an error is logged and counted, and
        the dialler starts again after the longest backoff.
        """
        while True:
            try:
                await self._dial_and_redial(peer)
            except Exception:
                self._metrics.dialler_errors += 1
                logger.exception(
                    "%s: the dialler of %s failed; it starts again in %.1f s",
                    self._node_id,
                    peer.node_id,
                    self._settings.backoff_max,
                )
                peer.connection = None
                peer.answers = None
                await asyncio.sleep(self._settings.backoff_max)

    async def _dial_and_redial(self, peer: Peer) -> None:
        """Dial ``peer``, and redial whenever the connection ends."""
        loop = asyncio.get_running_loop()
        settings = self._settings
        failures = 0
        quick_probes = 0
        # Connections in a row that the peer closed as soon as they were made. More than a
        # dying process's backlog can account for means the peer refuses this node.
        closed_at_once = 0
        refused = False
        while True:
            if peer.on_demand and not peer.queue:
                peer.wanted.clear()
                await peer.wanted.wait()
                failures = 0
            probe, peer.broke = peer.broke, False
            peer.dialling = True
            try:
                connection = await self._connect(peer, probe=probe, quiet=refused)
            finally:
                if peer.dialler is asyncio.current_task():
                    # A dialler replaced by a new address speaks no longer for the peer.
                    peer.dialling = False
                self.changed.set()
            if not isinstance(connection, FramedConnection):
                # What waited for a dead peer is stale by the time it is back.
                self._metrics.dropped_not_connected += len(peer.queue)
                peer.queue.clear()
                failures += 1
                if connection is ConnectFailure.TIMEOUT:
                    # No answer is no news: the next dial is still the probe, and it
                    # starts at once, since this one waited its connect_timeout (Rule 4).
                    peer.broke = probe
                elif not peer.on_demand:
                    await asyncio.sleep(self._backoff_delay(failures))
                continue
            opened_at = loop.time()
            try:
                peer.connection = connection
                peer.answers = AnswerWatch()
                connection.on_resume = lambda: self._flush(peer)
                self._flush(peer)
                await connection.wait_closed()
                at_once = loop.time() - opened_at < 2 * settings.backoff_initial
                if connection.ended_by_peer and not at_once:
                    # A round trip before a redial can be refused: the election may ask
                    # for pre-votes meanwhile. One closed at once was the probe of a
                    # dying process (the break before it was told) or a refusal.
                    self._inbox.peer_disconnected(peer.node_id)
                closed_at_once = closed_at_once + 1 if at_once else 0
                refused = closed_at_once > QUICK_PROBES
                if refused:
                    # The acceptor refused our handshake; only its log has the detail.
                    self._refusals.warn(
                        peer.node_id,
                        "%s: %s closes this node's connections as soon as they are made: it "
                        "refuses this node, and its log says why. If this node's own log shows "
                        "no refusal by it, compare this node's cluster, secret_file and [tls] "
                        "settings with the other nodes'",
                        self._node_id,
                        peer.node_id,
                    )
                logger.log(
                    logging.DEBUG if refused else logging.INFO,
                    "%s: connection to %s lost: %s",
                    self._node_id,
                    peer.node_id,
                    connection.reason or repr(connection.reason),
                )
                peer.broke = True
            finally:
                if peer.connection is connection:
                    peer.connection = None
                    peer.answers = None
                self._metrics.disconnects += 1
                connection.abort()
                self.changed.set()
                await connection.wait_closed()
            redial = after_connection(
                failures,
                quick_probes,
                lasted=loop.time() - opened_at,
                probe=probe,
                backoff_initial=settings.backoff_initial,
                backoff_max=settings.backoff_max,
            )
            failures, quick_probes = redial.failures, redial.quick_probes
            if redial.backoff:
                await asyncio.sleep(self._backoff_delay(failures))

    def _backoff_delay(self, failures: int) -> float:
        return backoff_delay(
            failures, self._settings.backoff_initial, self._settings.backoff_max, self._rng
        )

    # ------------------------------------------------------------------ dialling

    async def _connect(
        self, peer: Peer, *, probe: bool, quiet: bool = False
    ) -> FramedConnection | ConnectFailure | None:
        """Connect to ``peer`` and introduce this node.

        Returns the connection, or on failure (counted and logged) why the dial failed,
        or None if the peer refused this node (TLS, identity, secret). ``quiet`` logs a
        success at DEBUG: the peer refused the previous connection.
        """
        settings = self._settings
        host, port = peer.address
        try:
            connection = await self._dial(peer)
        except ssl.SSLError as exc:
            self._metrics.count(FrameProblem.TLS)
            self._report_refusal(peer, "TLS handshake failed", exc)
            return None
        except ConnectionRefusedError as exc:
            self._report_connect_failure(peer, ConnectFailure.REFUSED, exc)
            if probe and await self._inbound_gone_too(peer):
                # The connection broke and the host now refuses: the process is gone.
                self._inbox.peer_unreachable(peer.node_id)
            return ConnectFailure.REFUSED
        except TimeoutError as exc:
            self._report_connect_failure(peer, ConnectFailure.TIMEOUT, exc)
            return ConnectFailure.TIMEOUT
        except OSError as exc:
            self._report_connect_failure(peer, ConnectFailure.OTHER, exc)
            return ConnectFailure.OTHER
        transport = connection.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A connection reset as it was made has no socket left (EBADF): it ends as
            # any young connection does, in the dialler, which must not fail here.
            with contextlib.suppress(OSError):
                # A fixed size also turns off the kernel's buffer autotuning, which would
                # otherwise let megabytes of stale messages queue for a peer that stopped
                # reading.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer_bytes)
            tune_sent(sock, settings)
        transport.set_write_buffer_limits(high=settings.send_buffer_bytes)
        try:
            async with asyncio.timeout(settings.handshake_timeout):
                await self._introduce(peer, connection)
        except WireError as exc:
            self._metrics.count(exc.problem)
            self._report_refusal(peer, "refused the connection", exc)
            connection.abort()
            await connection.wait_closed()
            return None
        except (TimeoutError, OSError) as exc:
            # The acceptor closed on our handshake: another secret, or a TLS certificate
            # it refused. Its own log says which.
            self._report_refusal(peer, "closed the connection during the handshake", exc)
            connection.abort()
            await connection.wait_closed()
            return None
        except BaseException:
            # Cancelled (close()) while waiting for the acceptor: nobody else owns the socket.
            connection.abort()
            await connection.wait_closed()
            raise
        connection.send_only()
        self._metrics.connects += 1
        peer.failing = False
        logger.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s: connected to %s at %s:%d",
            self._node_id,
            peer.node_id,
            host,
            port,
        )
        return connection

    async def _dial(self, peer: Peer) -> FramedConnection:
        """Open a connection to ``peer``: a new attempt every spacing until one connects.

        Each attempt may take ``connect_timeout``; the first to connect is kept and the
        others are abandoned. The first attempt to fail otherwise (refused, no route)
        ends the dial with its error: only silence is worth another SYN (Rule 4).

        Raises:
            TimeoutError: nothing connected within ``connect_timeout``.
            OSError: an attempt failed (``ConnectionRefusedError``, ``ssl.SSLError``...).
        """
        loop = asyncio.get_running_loop()
        limit = self._settings.connect_timeout
        spacing = dial_spacing(peer.connect_estimate, limit)
        next_attempt = loop.time()
        deadline = next_attempt + limit
        attempts: dict[asyncio.Task[FramedConnection], float] = {}
        try:
            while True:
                now = loop.time()
                if now >= deadline:
                    raise TimeoutError(f"no answer within {limit} s")
                if now >= next_attempt:
                    attempts[loop.create_task(self._attempt(peer))] = now
                    next_attempt = now + spacing
                done, _ = await asyncio.wait(
                    attempts,
                    timeout=min(next_attempt, deadline) - now,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                # A connection wins over a failure that ended at the same moment.
                for task in sorted(done, key=lambda t: t.exception() is not None):
                    began = attempts.pop(task)
                    error = task.exception()
                    if error is not None:
                        raise error
                    peer.connect_estimate = next_connect_estimate(
                        peer.connect_estimate, loop.time() - began
                    )
                    return task.result()
        finally:
            for task in attempts:
                # Abandoned: one that connected as it was cancelled closes at once.
                task.cancel()
                task.add_done_callback(_close_abandoned)

    async def _attempt(self, peer: Peer) -> FramedConnection:
        """One attempt of a dial: a TCP (and TLS) connect to ``peer``, no handshake yet."""
        settings = self._settings
        host, port = peer.address
        connection = FramedConnection(
            settings.max_frame_bytes, write_timeout=settings.write_timeout
        )
        loop = asyncio.get_running_loop()
        if settings.tls is None:
            await loop.create_connection(lambda: connection, host, port)
        else:
            await loop.create_connection(
                lambda: connection, host, port, ssl=settings.tls.client, server_hostname=host
            )
        return connection

    async def _introduce(self, peer: Peer, connection: FramedConnection) -> None:
        """Check the acceptor's certificate, send our handshake and prove the secret.

        Raises:
            WireError: the acceptor is not ``peer`` (``IDENTITY``) or did not prove the
                secret (``AUTH``).
            OSError: the connection failed.
        """
        settings = self._settings
        if settings.tls is not None:
            assert connection.transport is not None
            peercert = connection.transport.get_extra_info("peercert")
            require_certificate_name(peercert, peer.node_id, "dialled")
        nonce = None
        if settings.secret is not None:
            from ._auth import new_nonce

            nonce = new_nonce()
        handshake = Handshake(PROTOCOL_VERSION, settings.cluster_id, self._node_id, nonce)
        connection.write(encode_handshake(handshake))
        if settings.secret is not None:
            from ._auth import prove

            await prove(settings.secret, handshake, peer.node_id, connection.read_frame, connection)

    # ------------------------------------------------------------------ reporting

    def _report_refusal(self, peer: Peer, what: str, exc: BaseException) -> None:
        # Every refusal is worth a warning: a misconfigured or hostile peer, not a blip.
        peer.failing = True
        logger.warning(
            "%s: %s at %s:%d %s: %s",
            self._node_id,
            peer.node_id,
            *peer.address,
            what,
            str(exc) or repr(exc),
        )

    async def _inbound_gone_too(self, peer: Peer) -> bool:
        """Whether ``peer``'s connection to this node is gone as well (soon after).

        A refused dial alone can also mean a listener that is broken while the process
        lives on and still sends to this node; taking that for a crash would let the
        others elect a successor while the old leader still leads. Only a peer gone in
        both directions is reported: its connection to this node must end before a frame
        comes from it, within the limit.
        """
        hears_from = self._hears_from
        if hears_from is None:
            return True
        node_id = peer.node_id
        heard = peer.heard
        loop = asyncio.get_running_loop()
        limit = loop.time() + (self._settings.answer_timeout or _BOTH_WAYS_LIMIT)
        step, quick = _BOTH_WAYS_WAIT
        while True:
            if not hears_from(node_id):
                return True
            if peer.heard != heard or loop.time() >= limit:
                break
            await asyncio.sleep(step if quick > 0 else _BOTH_WAYS_SLOW_STEP)
            quick -= 1
        logger.info(
            "%s: %s refuses connections but its connection to this node is open; "
            "not taken as evidence that its process is gone",
            self._node_id,
            node_id,
        )
        return False

    def _report_connect_failure(self, peer: Peer, failure: ConnectFailure, exc: OSError) -> None:
        """Count and log a failed dial of ``peer``.

        This is where the transport's evidence about a peer's health starts. ``REFUSED``
        means the peer's host answered and nothing listens on the port: its process is
        gone, which is worth an election at once; the caller reports it to the inbox when
        it follows a connection that just broke. ``TIMEOUT`` and ``OTHER`` say only that
        the network did not carry the dial, which is no evidence.
        """
        self._metrics.count(failure)
        level = logging.DEBUG if peer.failing else logging.INFO
        peer.failing = True
        logger.log(
            level,
            "%s: cannot connect to %s at %s:%d (%s): %s",
            self._node_id,
            peer.node_id,
            *peer.address,
            failure.name.lower(),
            str(exc) or repr(exc),
        )


def _close_abandoned(task: asyncio.Task[FramedConnection]) -> None:
    """Close the connection of an attempt that completed after its dial was decided."""
    if not task.cancelled() and task.exception() is None:
        task.result().abort()

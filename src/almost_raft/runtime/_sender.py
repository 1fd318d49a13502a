"""How the runtime hands a batch's messages to the transport, and lets the last ones leave."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..core._outputs import Outbound
from ..transport._interface import Transport
from ._status import RuntimeMetrics

__all__ = ["Sender"]

logger = logging.getLogger("almost_raft.runtime")


class Sender:
    """Sends each message on its own, never waiting for one: a slow peer holds up no other.

    Args:
        node_id: this node's id, for the log.
        transport: where messages go.
        metrics: the runtime's counters, which count every send and how it ended.
        message_timeout: how long a send may wait before it is cut off.
    """

    def __init__(
        self, node_id: str, transport: Transport, metrics: RuntimeMetrics, message_timeout: float
    ) -> None:
        self._node_id = node_id
        self._transport = transport
        self._metrics = metrics
        self._message_timeout = message_timeout
        self._sends: set[asyncio.Task[None]] = set()

    def send_all(self, messages: Iterable[Outbound]) -> None:
        """Send each message, in order, without waiting for any."""
        metrics = self._metrics
        send_nowait = self._transport.send_nowait
        for outbound in messages:
            metrics.messages_sent += 1
            # A transport that never waits takes the message here: no task, no timer, no
            # extra turn of the event loop per message.
            try:
                if send_nowait(outbound.to, outbound.message):
                    continue
            except Exception as exc:
                self._send_failed(outbound, exc)
                continue
            task = asyncio.get_running_loop().create_task(self._send_one(outbound))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def drain(self) -> None:
        """Wait for the sends under way, then cancel what is left of them."""
        if self._sends:
            # Let the last messages (a hand-over above all) leave; each send is already
            # bounded by message_timeout.
            await asyncio.wait(set(self._sends), timeout=self._message_timeout)
        sends = list(self._sends)
        for task in sends:
            task.cancel()
        if sends:
            await asyncio.wait(sends)

    async def _send_one(self, outbound: Outbound) -> None:
        """Send through a transport whose ``send()`` may wait, cut off at ``message_timeout``."""
        try:
            async with asyncio.timeout(self._message_timeout):
                await self._transport.send(outbound.to, outbound.message)
        except TimeoutError:
            self._metrics.sends_timed_out += 1
            logger.debug("%s: send to %s timed out", self._node_id, outbound.to)
        except Exception as exc:
            self._send_failed(outbound, exc)

    def _send_failed(self, outbound: Outbound, exc: Exception) -> None:
        self._metrics.sends_failed += 1
        logger.debug("%s: send to %s failed: %r", self._node_id, outbound.to, exc)

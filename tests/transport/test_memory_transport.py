"""The in-memory network (with its faults) and the latest-value leadership broadcast."""

from __future__ import annotations

import asyncio
import random

import pytest

from almost_raft import (
    ElectionClosed,
    HeartBeat,
    InMemoryNetwork,
    NetworkFaults,
    PeerMessage,
)
from almost_raft.runtime._latest_value import LatestValue
from helpers.cluster import run_async, wait_until


class _Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[float, PeerMessage]] = []
        # What the network told of crashed peers: (time, "disconnected" or
        # "unreachable", peer).
        self.told: list[tuple[float, str, str]] = []

    def deliver(self, message: PeerMessage) -> None:
        self.received.append((asyncio.get_running_loop().time(), message))

    def peer_unreachable(self, peer_id: str) -> None:
        self.told.append((asyncio.get_running_loop().time(), "unreachable", peer_id))

    def peer_disconnected(self, peer_id: str) -> None:
        self.told.append((asyncio.get_running_loop().time(), "disconnected", peer_id))


def _told(inbox: _Inbox) -> list[tuple[str, str]]:
    """What ``inbox`` was told, without the times: (kind, peer) pairs."""
    return [(kind, about) for _, kind, about in inbox.told]


async def _pair(network: InMemoryNetwork) -> tuple[_Inbox, _Inbox]:
    a, b = _Inbox(), _Inbox()
    await network.transport("a").start("a", a)
    await network.transport("b").start("b", b)
    return a, b


# ---------------------------------------------------------------------- the network


@run_async
async def test_messages_arrive_and_are_counted() -> None:
    network = InMemoryNetwork()
    _, b = await _pair(network)
    sender = network.transport("a2")
    beat = HeartBeat(1, "a")
    await sender.send("b", beat)
    await sender.send("nobody", beat)
    await wait_until(lambda: network.delivered + network.dropped == 2, what="both fates")
    assert [message for _, message in b.received] == [beat]
    assert (network.sent, network.delivered, network.dropped) == (2, 1, 1)


@run_async
async def test_send_nowait_takes_every_message_as_send_does() -> None:
    network = InMemoryNetwork()
    _, b = await _pair(network)
    sender = network.transport("a2")
    beat = HeartBeat(1, "a")
    assert sender.send_nowait("b", beat)
    assert network.sent == 1  # scheduled in the call: no task in between
    await wait_until(lambda: network.delivered == 1, what="the delivery")
    assert [message for _, message in b.received] == [beat]
    await sender.close()
    assert sender.send_nowait("b", beat)  # taken, and dropped: the sender is closed
    assert (network.sent, network.dropped) == (1, 1)


@run_async
async def test_a_closed_node_receives_nothing_and_a_new_transport_restarts_it() -> None:
    network = InMemoryNetwork()
    a = _Inbox()
    first = network.transport("a")
    await first.start("a", a)
    with pytest.raises(RuntimeError, match="already running"):
        await network.transport("a").start("a", _Inbox())
    await first.close()
    await first.close()
    assert network.live_nodes == frozenset()
    await network.transport("b").send("a", HeartBeat(1, "b"))
    await asyncio.sleep(0)
    assert a.received == []
    assert network.dropped == 1
    again = _Inbox()
    await network.transport("a").start("a", again)
    await network.transport("b").send("a", HeartBeat(2, "b"))
    await wait_until(lambda: len(again.received) == 1, what="delivery to the restarted node")


@run_async
async def test_a_closed_transport_tells_its_peers_nothing() -> None:
    network = InMemoryNetwork()
    a, b = await _pair(network)
    c, transport = _Inbox(), network.transport("c")
    await transport.start("c", c)
    await network.transport("d").start("d", _Inbox())
    # Closing is how a process that went silent looks: no evidence of anything.
    await transport.close()
    # Anything told of c would travel as the news of d's crash does, and ahead of it.
    network.crash("d")
    await wait_until(
        lambda: all(("unreachable", "d") in _told(inbox) for inbox in (a, b)),
        what="the news of d's crash",
    )
    for inbox in (a, b):
        assert _told(inbox) == [("disconnected", "d"), ("unreachable", "d")]
    assert c.told == []


@run_async
async def test_a_crash_tells_each_peer_of_the_ended_connection_then_the_refusal() -> None:
    faults = NetworkFaults(random.Random(3), delay=(0.01, 0.02))
    network = InMemoryNetwork(faults)
    a, b = await _pair(network)
    c = _Inbox()
    await network.transport("c").start("c", c)
    faults.cut("a", "c")
    loop = asyncio.get_running_loop()
    crashed_at = loop.time()
    network.crash("c")
    network.crash("c")  # not running any more: nothing more to tell
    assert network.live_nodes == frozenset({"a", "b"})
    await wait_until(lambda: len(b.told) == 2, what="b told of c's crash")
    (ended_at, ended, about), (refused_at, refused, again) = b.told
    assert (ended, about, refused, again) == ("disconnected", "c", "unreachable", "c")
    # One delay for the end of the connection, a round trip more for the refusal.
    assert ended_at - crashed_at >= 0.01
    assert refused_at - ended_at >= 0.02
    # The news takes three transits at most (0.06 s after the crash here), and nothing
    # is left to mark when a would have heard it: a fixed wait past that.
    await asyncio.sleep(0.1)
    assert a.told == []  # its link to c is cut: it hears nothing, as over TCP
    dropped = network.dropped
    await network.transport("b").send("c", HeartBeat(1, "b"))
    await wait_until(lambda: network.dropped == dropped + 1, what="the message to c dropped")
    assert c.received == []


@run_async
async def test_a_crashed_node_that_is_back_before_the_refusal_is_not_reported() -> None:
    faults = NetworkFaults(random.Random(3), delay=(0.02, 0.02))
    network = InMemoryNetwork(faults)
    a, _ = await _pair(network)
    await network.transport("c").start("c", _Inbox())
    network.crash("b")
    # c stays down: its refusal, due just after b's would be, marks when b's was due.
    network.crash("c")
    await wait_until(lambda: len(a.told) == 2, what="the ended connections")
    await network.transport("b").start("b", _Inbox())
    await wait_until(lambda: ("unreachable", "c") in _told(a), what="c's refusal")
    assert _told(a) == [("disconnected", "b"), ("disconnected", "c"), ("unreachable", "c")]


@run_async
async def test_a_transport_starts_once_and_only_for_its_own_id() -> None:
    network = InMemoryNetwork()
    transport = network.transport("a")
    with pytest.raises(ValueError, match="'a'"):
        await transport.start("b", _Inbox())
    await transport.start("a", _Inbox())
    with pytest.raises(RuntimeError):
        await transport.start("a", _Inbox())
    await transport.close()
    await transport.send("a", HeartBeat(1, "a"))  # after close: dropped, never raised
    assert network.dropped == 1


@run_async
async def test_faults_delay_drop_duplicate_and_partition() -> None:
    faults = NetworkFaults(random.Random(1), delay=(0.02, 0.03))
    network = InMemoryNetwork(faults)
    assert network.faults is faults
    _, b = await _pair(network)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await network.transport("x").send("b", HeartBeat(1, "x"))
    await wait_until(lambda: len(b.received) == 1, what="the delayed message")
    assert b.received[0][0] - sent_at >= 0.02

    faults.delay = (0.0, 0.0)
    faults.duplicate_rate = 0.5
    for term in range(200):
        await network.transport("x").send("b", HeartBeat(term + 1, "x"))
    await wait_until(lambda: network.delivered >= 201 + 50, what="the duplicates")
    assert 201 + 50 < len(b.received) < 201 + 150

    faults.duplicate_rate = 0.0
    faults.partition({"a"}, {"b", "x"})
    before, dropped = len(b.received), network.dropped
    await network.transport("a").send("b", HeartBeat(1, "a"))
    await network.transport("x").send("b", HeartBeat(1, "x"))
    # Counted as lost, a's message can no longer arrive late.
    await wait_until(lambda: network.dropped == dropped + 1, what="the cross-group message lost")
    await wait_until(lambda: len(b.received) == before + 1, what="the in-group message")
    assert [message for _, message in b.received[before:]] == [HeartBeat(1, "x")]

    faults.heal()
    faults.drop_rate = 0.5
    dropped = network.dropped
    for _ in range(200):
        await network.transport("x").send("b", HeartBeat(1, "x"))
    assert 50 < network.dropped - dropped < 150


# ---------------------------------------------------------------------- the broadcast


@run_async
async def test_a_subscriber_sees_the_current_value_then_only_the_latest() -> None:
    source: LatestValue[int] = LatestValue(0)
    source.publish(1)
    reader = source.subscribe()
    assert await reader.next() == 1  # the value current at subscription, at once
    for value in range(2, 1002):
        source.publish(value)  # nobody reads; publishing never waits
    assert await reader.next() == 1001
    assert reader.skipped == 999
    source.publish(1001)  # not a change: no new version
    waiter = asyncio.create_task(reader.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    source.publish(5)
    assert await waiter == 5


@run_async
async def test_iteration_ends_after_the_last_value_when_closed() -> None:
    source: LatestValue[str] = LatestValue("a")
    reader = source.subscribe()
    source.publish("b")
    source.close()
    source.publish("c")  # ignored after close
    assert [value async for value in reader] == ["b"]
    with pytest.raises(ElectionClosed, match="closed"):
        await reader.next()
    assert [value async for value in source.subscribe()] == ["b"]  # a late reader


@run_async
async def test_a_failed_publisher_raises_its_cause_to_readers() -> None:
    source: LatestValue[str] = LatestValue("a")
    reader = source.subscribe()
    assert await reader.next() == "a"
    waiting = asyncio.create_task(reader.next())
    await asyncio.sleep(0)
    cause = RuntimeError("bug")
    source.close(cause)
    with pytest.raises(ElectionClosed) as info:
        await waiting
    assert info.value.__cause__ is cause
    late = source.subscribe()
    assert await late.next() == "a"
    with pytest.raises(ElectionClosed, match="failed"):
        await late.__anext__()

"""The seed's API in detail: init's checks, the queues, membership and the lifecycle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from almost_raft import (
    ConfigError,
    ControlAddNode,
    ControlLeaderChanged,
    ControlRemoveNode,
    HeartBeat,
    Message,
    Node,
    NodeState,
    RaftElectionState,
    RequestVote,
    raft_election,
)
from helpers.cluster import run_async, wait_until


class QueueNode(Node):
    """A peer reached through its ``to_raft`` queue; records what it was sent."""

    def __init__(self, node_id: str, to_raft: asyncio.Queue[Message] | None = None) -> None:
        self.id = node_id
        self.to_raft = to_raft
        self.sent: list[Message] = []

    async def send_message(self, msg: Message) -> None:
        self.sent.append(msg)
        if self.to_raft is not None:
            await self.to_raft.put(msg)

    def node_id(self) -> str:
        return self.id


def role_of(state: RaftElectionState) -> NodeState:
    # A call, so the type checker does not carry an earlier check of the role over.
    return state.node_state


def _init(**override: Any) -> tuple[RaftElectionState, asyncio.Queue[Message]]:
    arguments: dict[str, Any] = {
        "self_id": "a",
        "election_timeout": 100,
        "heartbeat_interval": 20,
        "message_timeout": 20,
        "peers": [],
        "tx": asyncio.Queue(),
        "max_node": 5,
        "min_node": 0,
    }
    arguments.update(override)
    return RaftElectionState.init(**arguments)


@pytest.mark.parametrize(
    ("field", "override"),
    [
        ("self_id", {"self_id": ""}),
        ("self_id", {"self_id": "x" * 300}),
        ("self_id", {"self_id": 7}),
        ("peers", {"peers": [QueueNode("y" * 300)]}),
        ("election_timeout", {"election_timeout": 0.5}),
        ("heartbeat_interval", {"heartbeat_interval": 0}),
        ("heartbeat_interval", {"heartbeat_interval": 60}),
        ("message_timeout", {"message_timeout": -1}),
        ("min_node", {"min_node": -1}),
        ("max_node", {"max_node": 0}),
        ("max_node", {"max_node": 3, "min_node": 3}),
        ("tx", {"tx": []}),
        ("peers", {"peers": ["b"]}),
        ("peers", {"peers": [QueueNode("b"), QueueNode("c")], "max_node": 2}),
    ],
)
def test_init_rejects_bad_values_naming_the_argument(field: str, override: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        _init(**override)
    assert info.value.field == field


def test_state_reads_before_the_election_runs() -> None:
    b = QueueNode("b")
    state, to_raft = _init(peers=[b, QueueNode("a")])  # a Node naming itself is ignored
    assert isinstance(to_raft, asyncio.Queue)
    assert (state.self_id, state.term, state.leader_id) == ("a", 0, None)
    assert state.node_state is NodeState.FOLLOWER
    assert state.peers == [b]


@run_async
async def test_a_single_node_leads_and_reports_it_on_tx() -> None:
    tx: asyncio.Queue[Message] = asyncio.Queue()
    state, _ = _init(tx=tx)
    task = asyncio.create_task(raft_election(state))
    try:
        news = await asyncio.wait_for(tx.get(), 5)
        assert news == ControlLeaderChanged("a", state.term)
        assert state.node_state is NodeState.LEADER
        with pytest.raises(RuntimeError, match="already running"):
            await raft_election(state)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert role_of(state) is NodeState.TERMINATING


@run_async
async def test_a_full_tx_loses_its_oldest_news_never_the_newest() -> None:
    tx: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
    b = QueueNode("b")
    state, to_raft = _init(tx=tx, peers=[b])
    task = asyncio.create_task(raft_election(state))
    try:
        # Nobody reads tx. Make "b" this node's leader, then a newer leader of term 3.
        await to_raft.put(HeartBeat(2, "b"))
        await wait_until(lambda: state.leader_id == "b", what="b as leader")
        await to_raft.put(ControlAddNode(QueueNode("c")))
        await to_raft.put(HeartBeat(3, "c"))
        await wait_until(lambda: state.leader_id == "c", what="c as leader")
        assert tx.get_nowait() == ControlLeaderChanged("c", 3)
        assert state.leader_changes_dropped >= 1
        assert [node.node_id() for node in state.peers] == ["b", "c"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@run_async
async def test_min_node_holds_the_election_until_enough_peers_are_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = QueueNode("b")
    state, to_raft = _init(min_node=1)

    def held_off() -> int:
        return sum("not starting an election" in r.getMessage() for r in caplog.records)

    task = asyncio.create_task(raft_election(state))
    try:
        with caplog.at_level(logging.DEBUG, logger="almost_raft.core"):
            # Two election timeouts ran out, and each time the node held off; a node
            # that campaigned alone would have raised its term.
            await wait_until(
                lambda: held_off() >= 2 or state.term != 0, what="two timeouts held off"
            )
        assert b.sent == []
        assert state.term == 0
        await to_raft.put(ControlAddNode(b))
        await wait_until(lambda: len(b.sent) > 0, what="a (pre-)vote request to b")
        assert isinstance(b.sent[0], RequestVote)
        assert b.sent[0].pre_vote
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@run_async
async def test_max_node_refuses_more_peers_and_remove_forgets_one() -> None:
    state, to_raft = _init(max_node=2, peers=[QueueNode("b")])
    task = asyncio.create_task(raft_election(state))
    try:
        await to_raft.put(ControlAddNode(QueueNode("c")))
        await to_raft.put(ControlLeaderChanged("x"))  # not for to_raft: ignored
        await to_raft.put(ControlRemoveNode(QueueNode("b")))
        await wait_until(lambda: state.peers == [], what="b to be removed")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@run_async
async def test_removing_itself_ends_the_election() -> None:
    state, to_raft = _init(peers=[QueueNode("b")])
    task = asyncio.create_task(raft_election(state))
    await to_raft.put(ControlRemoveNode(QueueNode("a")))
    await asyncio.wait_for(task, 5)
    assert state.node_state is NodeState.TERMINATING
    with pytest.raises(RuntimeError):
        await raft_election(state)


@run_async
async def test_an_added_node_with_an_invalid_id_is_ignored_and_the_election_goes_on() -> None:
    state, to_raft = _init(peers=[QueueNode("b")])
    task = asyncio.create_task(raft_election(state))
    try:
        await to_raft.put(ControlAddNode(QueueNode("z" * 300)))
        await to_raft.put(ControlAddNode(QueueNode("c")))
        await wait_until(lambda: len(state.peers) == 2, what="c to be added")
        assert [node.node_id() for node in state.peers] == ["b", "c"]
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

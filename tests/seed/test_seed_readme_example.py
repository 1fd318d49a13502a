"""The Rust crate's README example, in Python: four nodes that talk through queues."""

from __future__ import annotations

import asyncio
import uuid

from almost_raft import (
    ControlAddNode,
    ControlLeaderChanged,
    ControlRemoveNode,
    Message,
    Node,
    NodeState,
    RaftElectionState,
    raft_election,
)
from helpers.cluster import run_async, wait_until


class NodeMPSC(Node):
    """A peer reached by putting messages on its ``to_raft`` queue."""

    def __init__(self, id: str, sender: asyncio.Queue[Message]) -> None:
        self.id = id
        self.sender = sender

    async def send_message(self, msg: Message) -> None:
        await self.sender.put(msg)

    def node_id(self) -> str:
        return self.id


async def agreed_leader(from_rafts: list[asyncio.Queue[Message]]) -> str:
    """Read every node's ``ControlLeaderChanged`` news until all name the same leader."""
    latest: list[str | None] = [None] * len(from_rafts)

    def agreed() -> bool:
        for i, from_raft in enumerate(from_rafts):
            while not from_raft.empty():
                news = from_raft.get_nowait()
                assert isinstance(news, ControlLeaderChanged)
                latest[i] = news.leader_id
        return latest[0] is not None and len(set(latest)) == 1

    await wait_until(agreed, what="every node to name the same leader")
    assert latest[0] is not None
    return latest[0]


@run_async
async def test_readme_example() -> None:
    # The README's numbers, with the times cut fifty-fold so the test is quick.
    heartbeat_interval, message_timeout, timeout, max_node, min_node = (20, 20, 100, 5, 3)
    nodes: dict[str, tuple[RaftElectionState, asyncio.Queue[Message], asyncio.Queue[Message]]] = {}
    for _ in range(4):
        tx: asyncio.Queue[Message] = asyncio.Queue(10)
        self_id = str(uuid.uuid4())
        state, tx_to_raft = RaftElectionState.init(
            self_id, timeout, heartbeat_interval, message_timeout, [], tx, max_node, min_node
        )
        nodes[self_id] = (state, tx_to_raft, tx)

    # Start every election; none begins until it knows min_node peers.
    tasks = {self_id: asyncio.create_task(raft_election(s)) for self_id, (s, _, _) in nodes.items()}

    # Let's add nodes: every node learns how to reach every other one.
    for self_id, (_, tx_to_raft, _) in nodes.items():
        for other_id, (_, other_to_raft, _) in nodes.items():
            if other_id != self_id:
                await tx_to_raft.put(ControlAddNode(NodeMPSC(other_id, other_to_raft)))

    # Raft notifies each node of a change in leadership through its tx queue.
    leader = await agreed_leader([from_raft for _, _, from_raft in nodes.values()])
    assert [s.node_state for s, _, _ in nodes.values()].count(NodeState.LEADER) == 1

    # Removing the leader's own node ends its election; the others elect a new leader.
    leader_state, leader_to_raft, _ = nodes.pop(leader)
    await leader_to_raft.put(ControlRemoveNode(NodeMPSC(leader, leader_to_raft)))
    await tasks.pop(leader)
    assert leader_state.node_state is NodeState.TERMINATING
    new_leader = await agreed_leader([from_raft for _, _, from_raft in nodes.values()])
    assert new_leader != leader
    assert nodes[new_leader][0].term > leader_state.term

    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)

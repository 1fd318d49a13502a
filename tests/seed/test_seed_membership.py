"""The seed API's membership: told to the leader alone, a change reaches every node."""

from __future__ import annotations

import asyncio

from almost_raft import (
    ControlAddNode,
    ControlRemoveNode,
    Message,
    NodeState,
    RaftElectionState,
    raft_election,
)
from helpers.cluster import run_async, wait_until
from helpers.seed import NodeMPSC


@run_async
async def test_a_member_the_leader_removes_learns_it_and_its_election_returns() -> None:
    states: dict[str, tuple[RaftElectionState, asyncio.Queue[Message]]] = {}
    for node_id in ("a", "b", "c"):
        tx: asyncio.Queue[Message] = asyncio.Queue()
        states[node_id] = RaftElectionState.init(node_id, 100, 20, 20, [], tx, 5, 2)
    tasks = {n: asyncio.create_task(raft_election(s)) for n, (s, _) in states.items()}
    try:
        for node_id, (_, to_raft) in states.items():
            for other, (_, other_to_raft) in states.items():
                if other != node_id:
                    await to_raft.put(ControlAddNode(NodeMPSC(other, other_to_raft)))

        def leader() -> str | None:
            leaders = [n for n, (s, _) in states.items() if s.node_state is NodeState.LEADER]
            return leaders[0] if len(leaders) == 1 else None

        await wait_until(lambda: leader() is not None, what="a leader")
        leader_id = leader()
        assert leader_id is not None
        victim = next(n for n in states if n != leader_id)
        # A follower told to remove a member only logs it: members change at the leader.
        bystander = next(n for n in states if n not in (leader_id, victim))
        await states[bystander][1].put(ControlRemoveNode(NodeMPSC(victim, states[victim][1])))
        await states[leader_id][1].put(ControlRemoveNode(NodeMPSC(victim, states[victim][1])))
        await asyncio.wait_for(tasks.pop(victim), 10)
        assert states[victim][0].node_state is NodeState.TERMINATING
        await wait_until(
            lambda: [p.node_id() for p in states[bystander][0].peers] == [leader_id],
            what="the bystander to follow the new configuration",
        )
        assert states[leader_id][0].node_state is NodeState.LEADER
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)

"""The seed API's membership: told to the leader alone, a change reaches every node."""

from __future__ import annotations

import asyncio

from almost_raft import (
    ControlAddNode,
    ControlRemoveNode,
    MemoryStore,
    Message,
    NodeState,
    RaftElectionState,
    RemovalNotice,
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


class Machine(NodeMPSC):
    """A peer whose process can be down: what is sent to it meanwhile is lost."""

    def __init__(self, id: str, sender: asyncio.Queue[Message]) -> None:
        super().__init__(id, sender)
        self.down = False
        self.lost = 0
        self.delivered: list[Message] = []

    async def send_message(self, msg: Message) -> None:
        if self.down:
            self.lost += 1
        else:
            self.delivered.append(msg)
            await super().send_message(msg)


@run_async
async def test_a_member_removed_while_down_learns_it_when_it_comes_back_and_returns() -> None:
    stores = {node_id: MemoryStore() for node_id in ("a", "b", "c")}
    states: dict[str, RaftElectionState] = {}
    machines: dict[str, Machine] = {}
    for node_id in stores:
        state, to_raft = RaftElectionState.init(
            node_id, 100, 20, 20, [], asyncio.Queue(), 5, 2, store=stores[node_id]
        )
        states[node_id] = state
        machines[node_id] = Machine(node_id, to_raft)
    tasks = {n: asyncio.create_task(raft_election(s)) for n, s in states.items()}
    try:
        for machine in machines.values():
            for other in machines.values():
                if other is not machine:
                    await machine.sender.put(ControlAddNode(other))

        def leader() -> str | None:
            leaders = [n for n, s in states.items() if s.node_state is NodeState.LEADER]
            return leaders[0] if len(leaders) == 1 else None

        await wait_until(lambda: leader() is not None, what="a leader")
        leader_id = leader()
        assert leader_id is not None
        victim = next(n for n in states if n != leader_id)

        def holds_a_leaders_configuration() -> bool:
            saved = stores[victim].state
            return saved is not None and saved.configuration is not None

        # A node that never heard the leader's configuration still holds its starting one,
        # as a new machine waiting to be added does, and is never told (Rule 2 of
        # core/_removal.py): only one that held it can learn of its removal.
        await wait_until(holds_a_leaders_configuration, what="the victim to save v1")
        # The victim's process stops (its task ends) and is removed meanwhile.
        machines[victim].down = True
        task = tasks.pop(victim)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await machines[leader_id].sender.put(ControlRemoveNode(machines[victim]))
        await wait_until(
            lambda: (
                [p.node_id() for p in states[leader_id].peers]
                == sorted(set(states) - {leader_id, victim})
            ),
            what="the removal to commit",
        )
        # The leader tells a removed member for an election timeout; wait until it stops.
        loop = asyncio.get_running_loop()
        seen = (machines[victim].lost, loop.time())

        def no_longer_told() -> bool:
            nonlocal seen
            if machines[victim].lost != seen[0]:
                seen = (machines[victim].lost, loop.time())
            return loop.time() - seen[1] > 0.4

        await wait_until(no_longer_told, what="the leader to stop telling the victim")
        # It comes back from its store, with the other two as its peers.
        others = [machines[n] for n in states if n != victim]
        state, to_raft = RaftElectionState.init(
            victim, 100, 20, 20, others, asyncio.Queue(), 5, 2, store=stores[victim]
        )
        machines[victim].sender = to_raft
        machines[victim].down = False
        await asyncio.wait_for(raft_election(state), 10)
        assert state.node_state is NodeState.TERMINATING
        assert any(isinstance(m, RemovalNotice) for m in machines[victim].delivered)
        assert states[leader_id].node_state is NodeState.LEADER
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)

"""Property tests of the core: any input sequence keeps the election's invariants.

One core is fed arbitrary messages (any term, any sender, forged or not), ticks and
membership changes; a scripted cluster is driven through arbitrary schedules of timeouts,
deliveries, losses, duplicates, partitions and crashes. Neither may raise, and the
invariants of DESIGN.md must hold after every step.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from almost_raft import (
    ElectionConfig,
    ElectionCore,
    HardState,
    HeartBeat,
    HeartBeatResponse,
    NodeState,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
)
from almost_raft.core._messages import MAX_TERM
from helpers.interaction._env import Env

IDS = st.sampled_from(["a", "b", "c", "d", "stranger"])
# Mostly small terms, so that messages of the same term meet; now and then an extreme one.
SMALL_TERMS = st.integers(0, 3)
TERMS = st.one_of(
    SMALL_TERMS, SMALL_TERMS, SMALL_TERMS, st.just(MAX_TERM), st.integers(0, MAX_TERM)
)
# Senders are mostly the real peers, sometimes this node itself or a stranger.
SENDERS = st.sampled_from(["b", "c", "b", "c", "d", "a", "stranger"])
MESSAGES: st.SearchStrategy[PeerMessage] = st.one_of(
    st.builds(RequestVote, TERMS, SENDERS, st.booleans()),
    st.builds(RequestVote, TERMS, SENDERS),
    st.builds(RequestVoteResponse, TERMS, SENDERS, st.booleans(), st.booleans()),
    st.builds(HeartBeat, TERMS, SENDERS),
    st.builds(HeartBeatResponse, TERMS, SENDERS),
)
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.0, 2.5)),
        st.tuples(st.just("receive"), MESSAGES, st.floats(0.0, 0.3)),
        st.tuples(st.just("receive"), MESSAGES, st.floats(0.0, 0.3)),
        st.tuples(st.just("add"), IDS),
        st.tuples(st.just("remove"), IDS),
    ),
    max_size=60,
)
CONFIGS = st.builds(
    ElectionConfig,
    pre_vote=st.booleans(),
    check_quorum=st.booleans(),
    min_peers=st.integers(0, 3),
)


@settings(max_examples=150, deadline=None)
@given(CONFIGS, st.integers(0, 2**32), ACTIONS)
def test_any_input_keeps_a_single_core_consistent(
    config: ElectionConfig, seed: int, actions: list[tuple[Any, ...]]
) -> None:
    core = ElectionCore("a", ["b", "c"], config, random.Random(seed), 0.0)
    now = 0.0
    durable = HardState()
    for action in actions:
        before = core.hard_state
        if action[0] == "tick":
            now += action[1]
            out = core.tick(now)
        elif action[0] == "receive":
            now += action[2]
            out = core.receive(action[1], now)
        elif action[0] == "add":
            out = core.add_peer(action[1], now)
        else:
            out = core.remove_peer(action[1], now)
        after = core.hard_state
        # Terms never go back; a vote, once cast, stands for the rest of its term.
        assert after.term >= before.term
        if after.term == before.term and before.voted_for is not None:
            assert after.voted_for == before.voted_for
        # The batch reports exactly the hard state changes, so the store is never behind.
        if out.hard_state is not None:
            durable = out.hard_state
        assert durable == after
        for outbound in out.messages:
            message = outbound.message
            assert message.sender == "a"
            assert outbound.to != "a"
            if (
                isinstance(message, RequestVoteResponse)
                and message.granted
                and not message.pre_vote
            ):
                # A vote leaves only once it is in the hard state of the same batch.
                assert (durable.term, durable.voted_for) == (message.term, outbound.to)
        if core.role is NodeState.LEADER:
            assert (core.voted_for, core.leader_id) == ("a", "a")
        if action[0] == "tick":
            # Every deadline that has passed was fired: the core wants waking later.
            assert core.next_deadline > now


SCHEDULE = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from(["0.05", "0.3", "1.1"]), IDS),
        st.tuples(st.just("tick-all"), st.sampled_from(["0.1", "0.5", "1.5"])),
        st.just(("deliver",)),
        st.just(("stabilize",)),
        st.tuples(st.just("drop"), IDS),
        st.tuples(st.just("duplicate"), IDS),
        st.tuples(st.just("isolate"), IDS),
        st.just(("heal",)),
        st.tuples(st.just("crash"), IDS),
        st.tuples(st.just("run"), st.sampled_from(["0.5", "2"])),
    ),
    min_size=3,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1000), st.booleans(), SCHEDULE)
def test_any_schedule_elects_at_most_one_leader_per_term(
    seed: int, pre_vote: bool, schedule: list[tuple[str, ...]]
) -> None:
    leaders: dict[int, str] = {}
    votes: dict[tuple[str, int], str] = {}
    with Env() as env:
        env.handle(f"add-nodes a b c d seed={seed} pre-vote={'true' if pre_vote else 'false'}")
        for step in schedule:
            command = _command(env, step)
            if command:
                env.handle(command)
            for node_id, node in env.nodes.items():
                core = node.core
                if core is None:
                    continue
                if core.role is NodeState.LEADER:
                    assert leaders.setdefault(core.term, node_id) == node_id, leaders
                if core.voted_for is not None:
                    voted = votes.setdefault((node_id, core.term), core.voted_for)
                    assert voted == core.voted_for, (node_id, core.term)


def _command(env: Env, step: tuple[str, ...]) -> str | None:
    """Turn a drawn step into a command the cluster can take now, or ``None``."""
    name = step[0]
    if name in ("tick", "crash", "drop", "duplicate", "isolate") and step[-1] == "stranger":
        return None
    if name == "tick":
        return f"tick {step[1]} {step[2]}" if env.nodes[step[2]].core else None
    if name == "tick-all":
        return f"tick {step[1]}"
    if name == "run":
        return f"run {step[1]}"
    if name in ("drop", "duplicate"):
        return f"{name} from={step[1]}"
    if name == "isolate":
        return f"isolate {step[1]}"
    if name == "crash":
        # A crashed node comes back at once, with the hard state it saved.
        return f"crash {step[1]}" if env.nodes[step[1]].core else f"restart {step[1]}"
    return name

"""The election timer: how long a node waits, and what it does when the wait runs out."""

from __future__ import annotations

import enum
import random

from ._config import ElectionConfig
from ._messages import MAX_TERM

__all__ = ["TimeoutAction", "election_timeout_action", "random_timeout"]


class TimeoutAction(enum.Enum):
    """What a node's election timeout leads to."""

    #: The term is the largest a message can carry: no further election is possible.
    TERM_EXHAUSTED = "term-exhausted"
    #: Fewer peers are known than ``min_peers``: wait as a follower with no leader.
    TOO_FEW_PEERS = "too-few-peers"
    PRE_VOTE = "pre-vote"
    CAMPAIGN = "campaign"


def election_timeout_action(term: int, peer_count: int, config: ElectionConfig) -> TimeoutAction:
    """Decide what a node in ``term`` that knows ``peer_count`` peers does on its timeout.

    Only a faulty or hostile peer can have driven the term to ``MAX_TERM``; a further
    election would need a term no message can carry, so it is refused rather than fail
    on building the request.
    """
    if term >= MAX_TERM:
        return TimeoutAction.TERM_EXHAUSTED
    if peer_count < config.min_peers:
        return TimeoutAction.TOO_FEW_PEERS
    return TimeoutAction.PRE_VOTE if config.pre_vote else TimeoutAction.CAMPAIGN


def random_timeout(
    config: ElectionConfig, rng: random.Random, leader_down: bool, step: float | None = None
) -> float:
    """A fresh election timeout, redrawn at every election (etcd does the same).

    While the leader is known to be down (``leader_down``) it is one to two ``step`` long
    (the ``leader_down_delay`` in force, by default ``leader_down_step``), so a split vote
    costs a few round trips, not a full election timeout.
    """
    if leader_down:
        if step is None:
            step = config.leader_down_step
        return step + step * rng.random()
    low, high = config.election_timeout_range
    return low + (high - low) * rng.random()

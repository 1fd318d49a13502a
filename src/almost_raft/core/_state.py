"""The values that describe one node's election state."""

from __future__ import annotations

import dataclasses
import enum

from ._configuration import Configuration
from ._messages import check_node_id, check_term

__all__ = ["HardState", "NodeState"]


class NodeState(enum.Enum):
    """The role a node plays.

    ``PRE_CANDIDATE`` is a follower asking whether it could win before it raises its term
    (PreVote). ``TERMINATING`` is a node that was removed from the cluster or shut down
    and no longer takes part.
    """

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    TERMINATING = "terminating"


@dataclasses.dataclass(frozen=True, slots=True)
class HardState:
    """What a node must remember across a crash: its term, its vote, its configuration.

    It must be durable before any message of the batch that produced it is sent:
    otherwise a node that crashes and restarts could vote twice in one term, or forget a
    configuration it acknowledged. ``configuration`` is ``None`` until a leader made one
    (version 1 or later); a node without one starts from its peer list.
    """

    term: int = 0
    voted_for: str | None = None
    configuration: Configuration | None = None

    def __post_init__(self) -> None:
        check_term(self.term)
        if self.voted_for is not None:
            check_node_id("voted_for", self.voted_for)
        if self.configuration is not None and not isinstance(self.configuration, Configuration):
            raise TypeError("configuration must be a Configuration or None")

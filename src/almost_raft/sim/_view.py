"""What the fault schedule sees of a simulated cluster (see :class:`ClusterView`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core._state import NodeState
from ._events import SimNode
from ._schedule import ClusterView

__all__ = ["cluster_view"]


def cluster_view(nodes: Sequence[SimNode], newest: SimNode | None) -> ClusterView:
    """The cluster as it is: which nodes run and lead, and the members ``newest`` (the
    leader of the highest term, if any) has in its configuration."""
    active = [node for node in nodes if node.active]
    up = [node for node in active if node.core is not None]
    leaders = [node for node in up if node.core is not None and node.core.role is NodeState.LEADER]
    voters: tuple[str, ...] = ()
    non_voters: tuple[str, ...] = ()
    if newest is not None:
        assert newest.core is not None
        config = newest.core.configuration
        voters = tuple(sorted(config.voters))
        non_voters = tuple(sorted(config.ids - config.voters))
    spares = tuple(
        node.id
        for node in nodes
        if not node.active and node.id not in voters and node.id not in non_voters
    )
    return ClusterView(
        tuple(node.id for node in active),
        tuple(node.id for node in up),
        tuple(node.id for node in leaders),
        voters,
        non_voters,
        spares,
    )

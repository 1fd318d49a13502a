"""The rules for ids and cluster size, checked once at each public entry point.

Every public way in (``ElectionCore``, ``Election``, ``RaftElectionState.init``, adding a
peer) calls these functions, so each rule is written once and every caller gets the same
:class:`ConfigError` naming the field. Messages from the network are checked by their
own constructors (:func:`check_node_id`), whose errors the transports count and drop.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ._config import ElectionConfig
from ._errors import ConfigError
from ._messages import MAX_ID_LENGTH, check_node_id

__all__ = ["admits_peer", "check_cluster_size", "check_id", "check_peer_ids"]


def check_id(field: str, value: object) -> str:
    """Return ``value`` if it is a valid node id, else raise :class:`ConfigError`."""
    try:
        check_node_id(field, value)
    except (TypeError, ValueError):
        raise ConfigError(
            field, value, f"must be a str of 1 to {MAX_ID_LENGTH} characters"
        ) from None
    assert isinstance(value, str)
    return value


def check_peer_ids(node_id: str, peers: Iterable[str]) -> list[str]:
    """The valid, distinct ids of ``peers`` other than ``node_id``, sorted.

    ``node_id`` itself may be listed (and is left out), so every node can be given the
    same list; any other id listed twice is a mistake worth naming.
    """
    if isinstance(peers, str | bytes):
        raise ConfigError("peers", peers, "must be a list of ids, not a single string")
    try:
        peer_list = list(peers)
    except TypeError:
        raise ConfigError("peers", peers, "must be an iterable of ids") from None
    seen: set[str] = set()
    for peer in peer_list:
        check_id("peers", peer)
        if peer in seen:
            raise ConfigError("peers", peer_list, f"names {peer!r} twice; list each member once")
        seen.add(peer)
    seen.discard(node_id)
    return sorted(seen)


def check_cluster_size(field: str, peers: Collection[str], config: ElectionConfig) -> None:
    """Raise :class:`ConfigError` unless ``peers`` and this node fit in ``max_nodes``."""
    limit = config.max_nodes
    if limit is not None and len(peers) + 1 > limit:
        raise ConfigError(
            field,
            sorted(peers),
            f"makes a cluster of {len(peers) + 1} nodes, more than max_nodes={limit}; "
            "raise max_nodes or list fewer peers",
        )


def admits_peer(peers: Collection[str], config: ElectionConfig) -> bool:
    """Whether one more peer beside ``peers`` and this node still fits in ``max_nodes``."""
    return config.max_nodes is None or len(peers) + 2 <= config.max_nodes

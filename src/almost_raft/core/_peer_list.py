"""The peer list of :class:`ElectionCore`: ``add_peer`` and ``remove_peer``.

:class:`ElectionCore` inherits this. The peer list is how the seed API changes members:
before any leader made a configuration, each node edits its own starting configuration
(every node is told); after that only the leader changes members, through the same
membership change as ``add_member`` and ``remove_member``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._configuration import Member
from ._errors import ConfigError, MembershipChangeError
from ._state import NodeState
from ._validation import admits_peer, check_id

if TYPE_CHECKING:
    from ._config import ElectionConfig
    from ._configuration import Configuration

__all__ = ["PeerList"]

logger = logging.getLogger("almost_raft.core")

_CAMPAIGNING = (NodeState.PRE_CANDIDATE, NodeState.CANDIDATE)


class PeerList:
    """The peer-list inputs of :class:`ElectionCore`; see the module docstring."""

    if TYPE_CHECKING:
        # Provided by ElectionCore.
        node_id: str
        config: ElectionConfig
        _role: NodeState
        _leader_id: str | None

        @property
        def configuration(self) -> Configuration: ...
        def _other_members(self) -> frozenset[str]: ...
        def _edit_starting_configuration(self, peer_id: str, add: bool) -> bool: ...
        def _add_member(self, member: Member) -> None: ...
        def _remove_member(self, node_id: str) -> None: ...
        def _request_votes_from(self, peer: str, *, timed: bool = True) -> None: ...
        def _tally(self) -> None: ...

    def _add_from_peer_list(self, peer_id: str) -> None:
        """Carry out :meth:`ElectionCore.add_peer`."""
        check_id("peer_id", peer_id)
        if peer_id == self.node_id or peer_id in self.configuration.ids:
            logger.debug("%s: peer %s is already a member", self.node_id, peer_id)
        elif not admits_peer(self._other_members(), self.config):
            logger.warning(
                "%s: refused to add peer %s: the cluster already has max_nodes=%d nodes",
                self.node_id,
                peer_id,
                self.config.max_nodes,
            )
        elif self._edit_starting_configuration(peer_id, add=True):
            logger.info(
                "%s: added peer %s (%d peers)", self.node_id, peer_id, len(self._other_members())
            )
            if self._role in _CAMPAIGNING:
                self._request_votes_from(peer_id)
        else:
            self._change_from_peer_list(peer_id, add=True)

    def _remove_from_peer_list(self, peer_id: str) -> None:
        """Carry out :meth:`ElectionCore.remove_peer`."""
        if peer_id not in self.configuration.ids or peer_id == self.node_id:
            return
        if self._edit_starting_configuration(peer_id, add=False):
            logger.info(
                "%s: removed peer %s (%d peers)",
                self.node_id,
                peer_id,
                len(self._other_members()),
            )
            if self._role in _CAMPAIGNING:
                self._tally()
        else:
            self._change_from_peer_list(peer_id, add=False)

    def _change_from_peer_list(self, peer_id: str, *, add: bool) -> None:
        if self._role is not NodeState.LEADER:
            logger.info(
                "%s: ignored %s peer %s: members change only at the leader (%s)",
                self.node_id,
                "adding" if add else "removing",
                peer_id,
                self._leader_id or "none known",
            )
            return
        try:
            if add:
                self._add_member(Member(peer_id))
            else:
                self._remove_member(peer_id)
        except (ConfigError, MembershipChangeError) as exc:
            logger.warning("%s: could not change members: %s", self.node_id, exc)

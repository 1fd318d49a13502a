"""Exceptions raised by almost-raft, named by who is to blame.

- :class:`ConfigError` -- the caller passed a value that cannot work. It names the field,
  the value and the fix. Nothing has started; correct the value and try again.
- :class:`StateFileError` -- the durable state on disk cannot be trusted (corrupt, from
  another format, unreadable). The node refuses to start rather than forget a vote.
- :class:`LeadershipLost` -- raised out of a leadership scope when this node stops being
  leader while the scope's body was running.
- :class:`ElectionClosed` -- the election was closed while the caller was waiting on it.
- :class:`MembershipChangeError` -- a change of members cannot be made here or now
  (this node does not lead, or another change is pending); nothing changed. A change
  whose leader lost its leadership before it committed raises it too: the change may
  still take effect, so read the configuration before trying again.

Bad input from the network is never raised: it is dropped, logged and counted.
"""

from __future__ import annotations

__all__ = [
    "AlmostRaftError",
    "ConfigError",
    "ElectionClosed",
    "LeadershipLost",
    "MembershipChangeError",
    "StateFileError",
]


class AlmostRaftError(Exception):
    """Base class of every exception almost-raft raises on purpose."""


class ConfigError(AlmostRaftError, ValueError):
    """A configuration value is invalid.

    Attributes:
        field: the name of the offending field, as the caller spelled it.
        value: the value that was rejected.
        fix: what a valid value looks like.
    """

    def __init__(self, field: str, value: object, fix: str) -> None:
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(f"invalid {field}={value!r}: {fix}")


class StateFileError(AlmostRaftError):
    """The state file exists but cannot be trusted; the node must not start.

    Starting anyway could make the node vote twice in one term or lower its term, which
    breaks the one-leader-per-term guarantee. The message names the file and what to do.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(
            f"state file {path!r} {problem}. The node will not start, because it could "
            "vote twice in one term. If this node's disk was lost or the file came from "
            "elsewhere, move the file aside and restart: the node then rejoins as a new "
            "member with term 0 and cannot win an election until it has caught up."
        )


class LeadershipLost(AlmostRaftError):
    """This node stopped being leader while a leadership scope was running.

    Attributes:
        term: the term in which this node had been leader (the fencing token it held).
    """

    def __init__(self, term: int) -> None:
        self.term = term
        super().__init__(f"leadership of term {term} was lost")


class ElectionClosed(AlmostRaftError):
    """The election was closed (or its task failed) while the caller waited on it."""


class MembershipChangeError(AlmostRaftError):
    """A change of members was refused, or its outcome is unknown.

    Attributes:
        leader_id: the leader this node knows, if any: where to send the change instead.
    """

    def __init__(self, message: str, leader_id: str | None = None) -> None:
        self.leader_id = leader_id
        super().__init__(message)

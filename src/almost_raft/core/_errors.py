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
    "DAMAGED_STATE_ADVICE",
    "LOCKED_STATE_ADVICE",
    "AlmostRaftError",
    "ConfigError",
    "ElectionClosed",
    "LeadershipLost",
    "MembershipChangeError",
    "StateFileError",
]

#: What to do when a node's term and vote are lost or damaged. A node restarted empty under
#: its old id could vote again in a term it already voted in (and so elect a second leader
#: of that term); a new member has no votes behind it.
DAMAGED_STATE_ADVICE = (
    "Its term and vote are lost, so it must rejoin as a new member: remove this node "
    "from the cluster, then add it back (with an empty state directory) once the removal "
    "is committed. Do not delete or move the file and restart it under the same id: it "
    "would start again at term 0 and could vote a second time in a term it already voted in"
)
#: What to do when another process holds the state file's lock.
LOCKED_STATE_ADVICE = (
    "Another node is running with this id and this state file: stop that node first, "
    "or start this one with its own id. Never copy, move or delete the file to get past "
    "this: two nodes with one id would vote twice in one term"
)


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

    Attributes:
        path: the state file.
        advice: what the operator should do; safe for every problem it is given for.
    """

    def __init__(self, path: str, problem: str, advice: str = DAMAGED_STATE_ADVICE) -> None:
        self.path = path
        self.advice = advice
        super().__init__(
            f"state file {path!r} {problem}. The node will not start, because it could "
            f"vote twice in one term. {advice}"
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

"""Reading the JSON log lines of an ``almost-raft run`` process, as they are appended."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["LeaderEvent", "LogFollower", "leader_events_in"]


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderEvent:
    """One ``leader_changed`` line of a node's log: what the node learned, and when.

    Attributes:
        node: the node that logged it.
        leader: the leader it now knows, or ``None``.
        term: the term of that knowledge.
        monotonic: ``time.monotonic()`` in the node's process when it logged the change.
    """

    node: str
    leader: str | None
    term: int
    monotonic: float

    @property
    def is_self(self) -> bool:
        """Whether the node itself became leader."""
        return self.leader == self.node


class LogFollower:
    """Reads the complete JSON lines appended to one log file since the last read."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self._path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        entries = []
        for line in lines:
            # A leader command writes to the same file; its lines are not ours to parse.
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries


def leader_events_in(node: str, entries: list[dict[str, Any]]) -> list[LeaderEvent]:
    """The well-formed ``leader_changed`` events among ``node``'s log entries, in order."""
    events = []
    for entry in entries:
        if entry.get("event") != "leader_changed":
            continue
        leader, term, at = entry.get("leader"), entry.get("term"), entry.get("monotonic")
        if (
            (leader is None or isinstance(leader, str))
            and isinstance(term, int)
            and isinstance(at, int | float)
        ):
            events.append(LeaderEvent(node, leader, term, float(at)))
    return events

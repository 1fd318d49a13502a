"""The two safety invariants every checker holds a run to, in one place.

The simulator checks them as its run goes; the chaos checker after a run of real
processes, from their logs and state files. Both feed :class:`SafetyLedger` in time
order and word the findings for their own reports.

- Election Safety (Raft paper 5.2): at most one node leads each term.
- A node's term never goes down, in a running process or across a crash and restart.
"""

from __future__ import annotations

__all__ = ["TERM_DECREASED", "TWO_LEADERS_IN_TERM", "SafetyLedger"]

TWO_LEADERS_IN_TERM = "two_leaders_in_term"
TERM_DECREASED = "term_decreased"


class SafetyLedger:
    """What a run has shown so far: who led each term, and each node's highest term.

    Each observation carries a time and, for terms, where it was seen, so that a finding
    can name the earlier observation it contradicts.
    """

    __slots__ = ("_highest_term", "_leader_of_term")

    def __init__(self) -> None:
        self._leader_of_term: dict[int, tuple[str, float]] = {}
        self._highest_term: dict[str, tuple[int, float, str]] = {}

    def claim(self, node: str, term: int, at: float) -> tuple[str, float] | None:
        """``node`` claimed leadership of ``term`` at ``at``.

        Returns:
            ``None`` if that is consistent, else the other node that claimed ``term``
            first and when.
        """
        first = self._leader_of_term.setdefault(term, (node, at))
        return None if first[0] == node else first

    def term_seen(
        self, node: str, term: int, at: float, where: str = ""
    ) -> tuple[int, float, str] | None:
        """``node`` had ``term`` at ``at`` (seen in ``where``).

        Returns:
            ``None`` if the term did not go down, else the higher term seen earlier, when
            and where. The highest term stays the one to compare later terms with.
        """
        highest = self._highest_term.get(node)
        if highest is not None and term < highest[0]:
            return highest
        self._highest_term[node] = (term, at, where)
        return None

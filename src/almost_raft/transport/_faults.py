"""Seeded network faults: which messages are lost, late, doubled or cut off.

Shared by the in-memory transport (real asyncio time) and the simulator (simulated
time), so a fault schedule means the same thing in both.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

__all__ = ["NetworkFaults"]


class NetworkFaults:
    """Decides the fate of every message between two nodes.

    Args:
        rng: the source of every random choice, so a seed replays the same faults.
        drop_rate: the chance, in ``[0, 1)``, that a message is lost.
        delay: ``(low, high)`` seconds; each delivered copy is late by a uniform draw.
        duplicate_rate: the chance, in ``[0, 1)``, that a message arrives twice.

    Links are cut one way at a time; :meth:`cut` cuts both ways and :meth:`heal` mends
    every link. Rates and delays may be changed at any time by assigning the attributes.
    """

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        drop_rate: float = 0.0,
        delay: tuple[float, float] = (0.0, 0.0),
        duplicate_rate: float = 0.0,
    ) -> None:
        self.rng = rng or random.Random()
        self.drop_rate = drop_rate
        self.delay = delay
        self.duplicate_rate = duplicate_rate
        self._cut: set[tuple[str, str]] = set()
        self._isolated: set[str] = set()
        self._groups: list[frozenset[str]] = []
        self._check()

    def _check(self) -> None:
        for name in ("drop_rate", "duplicate_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
        low, high = self.delay
        if not 0.0 <= low <= high:
            raise ValueError(f"delay must be (low, high) with 0 <= low <= high, got {self.delay}")

    # ------------------------------------------------------------------ partitions

    def cut(self, a: str, b: str) -> None:
        """No message passes between ``a`` and ``b``, either way."""
        self._cut.add((a, b))
        self._cut.add((b, a))

    def cut_one_way(self, sender: str, receiver: str) -> None:
        """Messages from ``sender`` to ``receiver`` are lost; the other way still works."""
        self._cut.add((sender, receiver))

    def isolate(self, node: str) -> None:
        """Cut ``node`` off from everyone."""
        self._isolated.add(node)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the nodes into groups that reach only their own members.

        A node named in no group is cut off from all that are in one.
        """
        self._groups = [frozenset(group) for group in groups]

    def heal(self) -> None:
        """Mend every cut, isolation and partition."""
        self._cut.clear()
        self._isolated.clear()
        self._groups = []

    def can_reach(self, sender: str, receiver: str) -> bool:
        """Whether the link from ``sender`` to ``receiver`` is up (ignoring random loss)."""
        if not (self._isolated or self._cut or self._groups):
            return True
        if sender in self._isolated or receiver in self._isolated:
            return False
        if (sender, receiver) in self._cut:
            return False
        if self._groups:
            return any(sender in group and receiver in group for group in self._groups)
        return True

    # ------------------------------------------------------------------ one message

    def transit(self, sender: str, receiver: str) -> float | None:
        """How late a packet that TCP gets through arrives: a delay drawn as for a
        message, or ``None`` if the link is cut. Loss and duplication do not apply: TCP
        resends and discards; a connection's close and a refused dial take this path."""
        if not self.can_reach(sender, receiver):
            return None
        low, high = self.delay
        return self.rng.uniform(low, high) if high > 0.0 else 0.0

    def deliveries(self, sender: str, receiver: str) -> list[float]:
        """The delays, in seconds, of each copy of one message; empty if it is lost."""
        if not self.can_reach(sender, receiver):
            return []
        rng = self.rng
        if self.drop_rate and rng.random() < self.drop_rate:
            return []
        copies = 2 if self.duplicate_rate and rng.random() < self.duplicate_rate else 1
        low, high = self.delay
        if high <= 0.0:
            return [0.0] * copies
        if copies == 1:
            return [rng.uniform(low, high)]
        return [rng.uniform(low, high), rng.uniform(low, high)]

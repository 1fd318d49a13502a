"""Membership changes asked of the runtime, and the callers waiting for them to commit.

The core decides everything (whether this node leads, whether a change is pending, when
a configuration commits); this module only keeps each caller's future until the
committed configuration shows the change, or the leadership it was asked of is over.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from ..core._configuration import Configuration, Member
from ..core._errors import ConfigError, ElectionClosed, MembershipChangeError
from ..core._outputs import Output
from ..core._state import NodeState
from ..core._state_machine import ElectionCore

__all__ = ["ChangeRequest", "PendingChanges"]


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeRequest:
    """One change for the driver to hand to the core: ``add`` a :class:`Member`,
    ``remove`` or ``promote`` an id. ``future`` gets the committed configuration."""

    kind: str
    subject: Member | str
    future: asyncio.Future[Configuration]


@dataclasses.dataclass(frozen=True, slots=True)
class _Waiter:
    future: asyncio.Future[Configuration]
    done: Callable[[Configuration], bool]
    term: int
    what: str


class PendingChanges:
    """The callers waiting for their change to commit, oldest first."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting: list[_Waiter] = []

    def apply(self, core: ElectionCore, request: ChangeRequest, now: float) -> Output | None:
        """Ask the core for the change; a refusal goes to the caller at once."""
        subject = request.subject
        try:
            if request.kind == "add":
                assert isinstance(subject, Member)
                output = core.add_member(subject, now)
                what = f"adding {subject.node_id}"
                done = _has(subject.node_id, voter=subject.voter)
            elif request.kind == "remove":
                assert isinstance(subject, str)
                output = core.remove_member(subject, now)
                what = f"removing {subject}"
                done = _lacks(subject)
            else:
                assert isinstance(subject, str)
                output = core.promote_member(subject, now)
                what = f"promoting {subject}"
                done = _has(subject, voter=True)
        except (ConfigError, MembershipChangeError) as error:
            if not request.future.done():
                request.future.set_exception(error)
            return None
        self.waiting.append(_Waiter(request.future, done, core.term, what))
        return output

    def settle(self, core: ElectionCore) -> None:
        """After a batch: resolve the changes now committed, fail those that cannot be."""
        if not self.waiting:
            return
        committed = core.committed_configuration
        still: list[_Waiter] = []
        for waiter in self.waiting:
            if waiter.future.done():
                continue
            if committed is not None and waiter.done(committed):
                waiter.future.set_result(committed)
            elif core.term != waiter.term or core.role is not NodeState.LEADER:
                waiter.future.set_exception(
                    MembershipChangeError(
                        f"{core.node_id}: leadership of term {waiter.term} ended before "
                        f"{waiter.what} committed; it may still take effect, so read the "
                        "configuration before asking again",
                        core.leader_id,
                    )
                )
            else:
                still.append(waiter)
        self.waiting = still

    def close(self, node_id: str) -> None:
        """The election ended: nobody will commit what is still waiting."""
        for waiter in self.waiting:
            if not waiter.future.done():
                waiter.future.set_exception(
                    ElectionClosed(f"{node_id}: the election ended before {waiter.what} committed")
                )
        self.waiting.clear()


def _has(node_id: str, *, voter: bool) -> Callable[[Configuration], bool]:
    def done(config: Configuration) -> bool:
        member = config.member(node_id)
        return member is not None and member.voter is voter

    return done


def _lacks(node_id: str) -> Callable[[Configuration], bool]:
    return lambda config: config.member(node_id) is None

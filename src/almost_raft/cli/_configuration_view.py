"""The configuration part of ``almost-raft status``: what the nodes hold, and who differs.

Pure functions of the ``/status`` answers: they read each node's ``configuration``
object, pick the one to show (the leader's, else the newest), and word every node that
holds another or has a change under way. A ``/status`` answer is another process's
output, so a field that is missing or of the wrong type reads as unknown, never raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

__all__ = [
    "HeldConfiguration",
    "configuration_cell",
    "configuration_lines",
    "held_configuration",
    "reference_configuration",
]


@dataclasses.dataclass(frozen=True, slots=True)
class HeldConfiguration:
    """The configuration one node said it holds.

    Attributes:
        version: its version (0: the node's starting members, before any leader).
        term: the term of the leader that made it, or ``None`` if the node did not say
            (a node of an earlier release).
        committed: whether the node knows this version committed.
        change_pending: whether the node, as leader, has a change of members under way.
        members: ``(id, voter, address)`` of every member, sorted by id.
    """

    version: int
    term: int | None
    committed: bool
    change_pending: bool
    members: tuple[tuple[str, bool, str | None], ...]

    @property
    def key(self) -> tuple[int, int]:
        """``(term, version)``, ordered as the nodes order configurations."""
        return (self.term or 0, self.version)

    def describe(self) -> str:
        """``v3 (made in term 2)``."""
        made = "" if self.term is None else f" (made in term {self.term})"
        return f"v{self.version}{made}"


def held_configuration(status: Mapping[str, Any]) -> HeldConfiguration | None:
    """The configuration in one node's ``/status`` answer, or ``None`` if it has none."""
    raw = status.get("configuration")
    if not isinstance(raw, dict):
        return None
    version = raw.get("version")
    if not _is_int(version):
        return None
    term = raw.get("term")
    committed_version = raw.get("committed_version")
    committed = raw.get("committed")
    if not isinstance(committed, bool):
        # An earlier release said only which version it knew committed.
        committed = _is_int(committed_version) and 0 < version <= committed_version
    members = []
    listed = raw.get("members")
    if isinstance(listed, dict):
        for node_id, info in sorted(listed.items()):
            info = info if isinstance(info, dict) else {}
            address = info.get("address")
            members.append(
                (
                    str(node_id),
                    info.get("voter") is True,
                    address if isinstance(address, str) else None,
                )
            )
    return HeldConfiguration(
        version,
        term if _is_int(term) else None,
        committed,
        raw.get("change_pending") is True,
        tuple(members),
    )


def reference_configuration(
    held: Mapping[str, HeldConfiguration], leaders: Sequence[str]
) -> tuple[str, HeldConfiguration] | None:
    """The configuration to show and who holds it: the leader's (of the highest term,
    if several claim it), else the newest any node holds."""
    for leader in leaders:
        if leader in held:
            return leader, held[leader]
    if not held:
        return None
    node = max(held, key=lambda n: (held[n].key, n))
    return node, held[node]


def configuration_cell(
    config: HeldConfiguration | None, reference: HeldConfiguration | None
) -> str:
    """One node's entry in the table's CONFIG column."""
    if config is None:
        return "-"
    cell = f"v{config.version}"
    notes = []
    if reference is not None and config.key < reference.key:
        notes.append("older")
    elif reference is not None and config.key > reference.key:
        notes.append("newer")
    if config.change_pending:
        notes.append("change pending")
    elif config.version == 0:
        notes.append("starting")
    elif not config.committed:
        notes.append("not known committed")
    return cell + (f" ({', '.join(notes)})" if notes else "")


def configuration_lines(held: Mapping[str, HeldConfiguration], leaders: Sequence[str]) -> list[str]:
    """The configuration section: the one shown, its members, and every node that
    differs from it (an older or newer version, a change under way, not known committed).

    ``held`` maps each reachable node to what it holds; ``leaders`` lists the nodes that
    say they lead, highest term first.
    """
    found = reference_configuration(held, leaders)
    if found is None:
        return ["no reachable node reported a configuration"]
    holder, config = found
    source = (
        f"as leader {holder} holds it" if holder in leaders else f"the newest, held by {holder}"
    )
    state = (
        "the starting members"
        if config.version == 0
        else "committed"
        if config.committed
        else "not known committed"
    )
    lines = [f"configuration {config.describe()}, {state} ({source}):"]
    rows = [
        (node_id, "voter" if voter else "non-voter", address or "-")
        for node_id, voter, address in config.members
    ]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    for row in rows:
        lines.append(
            ("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        )
    differences = []
    for node, other in sorted(held.items()):
        if other.key < config.key:
            differences.append(f"{node} holds an older configuration, {other.describe()}")
        elif other.key > config.key:
            differences.append(f"{node} holds a newer configuration, {other.describe()}")
        elif other.members != config.members:
            differences.append(f"{node} holds {other.describe()} with other members")
        if other.change_pending:
            differences.append(f"{node} has a change of members under way")
        elif other.version > 0 and not other.committed and other.key == config.key:
            differences.append(f"{node} does not know {other.describe()} committed yet")
    if differences:
        lines.append("nodes that differ:")
        lines.extend(f"  {text}" for text in differences)
    else:
        lines.append("every reachable node holds this configuration")
    return lines


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

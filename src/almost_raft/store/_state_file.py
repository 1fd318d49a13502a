"""The state file's format: two checksummed slots, each one page, the newer one in force.

Pure encoding and decoding, no file access: :class:`FileStore` reads and writes the bytes,
and a reader watching a running node's file decodes them with :func:`decode_state`.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
from typing import Any, TypeGuard

from ..core._configuration import Configuration, Member
from ..core._errors import StateFileError
from ..core._state import HardState

__all__ = [
    "FILE_BYTES",
    "SLOT_BYTES",
    "UNUSED_SLOT",
    "VERSION",
    "VERSION_1",
    "Decoded",
    "decode_file",
    "decode_state",
    "encode_slot",
    "encode_state",
]

_FORMAT = "almost-raft-state"
# Version 3 adds the configuration and the ids of the node and cluster that wrote it.
VERSION = 3
# Version 2 had the same two slots with only the term and vote; version 1 was one JSON
# object, replaced by a rename on every save. Both are still read, so a node upgrades in
# place, and its first save rewrites the file as version 3.
_VERSION_2 = 2
VERSION_1 = 1
_VERSION_1_MAX_BYTES = 4096
# A slot is one page: a single pwrite of it is one page-cache copy, so a killed process
# leaves it whole, and only a power loss can tear it.
SLOT_BYTES = 4096
_SLOTS = 2
FILE_BYTES = _SLOTS * SLOT_BYTES


def encode_slot(
    state: HardState, seq: int, *, node_id: str | None = None, cluster_id: str | None = None
) -> bytes:
    """One 4096-byte slot holding ``state`` with sequence number ``seq``.

    A JSON object with a CRC-32 of its other fields, keys sorted, padded with spaces and
    ended by a newline. The configuration is ``null`` or ``{"version", "term",
    "members": [[id, voter, address], ...]}``.
    """
    config = state.configuration
    body: dict[str, Any] = {
        "format": _FORMAT,
        "version": VERSION,
        "seq": seq,
        "term": state.term,
        "voted_for": state.voted_for,
        "node_id": node_id,
        "cluster_id": cluster_id,
        "configuration": None
        if config is None
        else {
            "version": config.version,
            "term": config.term,
            "members": [[m.node_id, m.voter, m.address] for m in config.members],
        },
    }
    body["crc32"] = _checksum(body)
    line = json.dumps(body, sort_keys=True).encode()
    # JSON escapes keep it ASCII: at most 12 bytes per character of an id.
    if len(line) >= SLOT_BYTES:
        raise ValueError(
            f"a state of {len(line)} bytes does not fit a {SLOT_BYTES}-byte slot; "
            "use shorter node ids and addresses"
        )
    return line.ljust(SLOT_BYTES - 1) + b"\n"


def encode_state(state: HardState, seq: int = 1) -> bytes:
    """The bytes of a whole new state file: ``state`` in slot 0, slot 1 unused."""
    return encode_slot(state, seq) + UNUSED_SLOT


UNUSED_SLOT = b" " * (SLOT_BYTES - 1) + b"\n"


def decode_state(raw: bytes, path: str) -> HardState:
    """The newest state in a state file's bytes (format version 1, 2 or 3).

    This is the decoding :meth:`FileStore.load` uses, without the lock and without the
    warning about a damaged slot, for a reader watching the file of a running node.

    Raises:
        StateFileError: the bytes hold no state that can be trusted; the message says why.
    """
    return decode_file(raw, path).state


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """What a state file holds, and where.

    ``slot`` and ``seq`` are those of the newest state (0 and 0 for a version-1 file);
    ``passed_over`` names a damaged slot that was skipped, and what is wrong with it.
    ``node_id`` and ``cluster_id`` are those the slot names (version 3 only).
    """

    state: HardState
    version: int
    slot: int = 0
    seq: int = 0
    passed_over: tuple[int, str] | None = None
    node_id: str | None = None
    cluster_id: str | None = None


class _DamagedSlot(Exception):
    """A slot that does not hold an intact state, as a torn write leaves it."""


def decode_file(raw: bytes, path: str) -> Decoded:
    if len(raw) == FILE_BYTES:
        return _decode_slots(raw, path)
    if len(raw) > FILE_BYTES:
        raise StateFileError(
            path, f"is {len(raw)} bytes, larger than a state file ({FILE_BYTES} bytes)"
        )
    if len(raw) > _VERSION_1_MAX_BYTES:
        raise StateFileError(
            path,
            f"is {len(raw)} bytes, but a state file has {FILE_BYTES} (format versions 2 "
            f"and 3) or at most {_VERSION_1_MAX_BYTES} (format version 1); it is truncated "
            "or damaged",
        )
    return _decode_version_1(raw, path)


def _decode_version_1(raw: bytes, path: str) -> Decoded:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(path, f"is not valid JSON ({exc}); it is damaged") from exc
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise StateFileError(path, "is not an almost-raft state file")
    version = body.get("version")
    if _is_int(version) and version in _SLOT_VERSIONS:
        raise StateFileError(
            path,
            f"is a format version {version} file of {len(raw)} bytes instead of "
            f"{FILE_BYTES}; it is truncated",
        )
    _check_version(version, (VERSION_1,), path, "")
    stored = body.pop("crc32", None)
    if stored != _checksum(body):
        raise StateFileError(path, "fails its checksum; it is damaged")
    try:
        state = HardState(body["term"], body["voted_for"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(path, f"holds an invalid state ({exc})") from exc
    return Decoded(state, VERSION_1)


_SLOT_VERSIONS = (_VERSION_2, VERSION)


@dataclasses.dataclass(frozen=True, slots=True)
class _Slot:
    seq: int
    version: int
    state: HardState
    node_id: str | None
    cluster_id: str | None


def _decode_slots(raw: bytes, path: str) -> Decoded:
    found: list[tuple[int, int, _Slot]] = []
    damaged: list[tuple[int, str]] = []
    for slot in range(_SLOTS):
        try:
            decoded = _decode_slot(raw[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES], path, slot)
        except _DamagedSlot as exc:
            damaged.append((slot, str(exc)))
            continue
        if decoded is not None:
            found.append((decoded.seq, slot, decoded))
    if not found:
        if not damaged:
            raise StateFileError(path, "holds no state in either slot; it is damaged")
        problems = "; ".join(f"slot {slot} {problem}" for slot, problem in damaged)
        raise StateFileError(path, f"has no intact slot ({problems}); it is damaged")
    if len(found) == _SLOTS and found[0][0] == found[1][0]:
        raise StateFileError(
            path, f"holds sequence number {found[0][0]} in both slots; it is damaged"
        )
    seq, slot, newest = max(found, key=lambda item: (item[0], item[1]))
    return Decoded(
        newest.state,
        newest.version,
        slot,
        seq,
        damaged[0] if damaged else None,
        newest.node_id,
        newest.cluster_id,
    )


def _decode_slot(raw: bytes, path: str, slot: int) -> _Slot | None:
    """A slot's contents, or ``None`` for a slot never written.

    Raises:
        _DamagedSlot: the slot holds something a torn write could leave.
        StateFileError: the slot is intact but of a format version this release does not
            read: falling back to the other slot could bring back an older state.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _DamagedSlot("is not text") from exc
    if not text.strip():
        return None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _DamagedSlot(f"is not valid JSON ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise _DamagedSlot("does not hold an almost-raft state")
    version = body.get("version")
    _check_version(version, _SLOT_VERSIONS, path, f"slot {slot} ")
    assert _is_int(version)
    stored = body.pop("crc32", None)
    if stored != _checksum(body):
        raise _DamagedSlot("fails its checksum")
    seq = body.get("seq")
    if not _is_int(seq) or seq < 1:
        raise _DamagedSlot(f"holds an invalid sequence number {seq!r}")
    try:
        if version == _VERSION_2:
            return _Slot(seq, version, HardState(body["term"], body["voted_for"]), None, None)
        state = HardState(
            body["term"], body["voted_for"], _decode_configuration(body["configuration"])
        )
        node_id, cluster_id = body["node_id"], body["cluster_id"]
        for value in (node_id, cluster_id):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"an id must be a string or null, got {value!r}")
        return _Slot(seq, version, state, node_id, cluster_id)
    except (KeyError, TypeError, ValueError) as exc:
        raise _DamagedSlot(f"holds an invalid state ({exc})") from exc


def _decode_configuration(raw: object) -> Configuration | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("members"), list):
        raise TypeError(f"the configuration must be an object with members, got {raw!r}")
    members = []
    for entry in raw["members"]:
        if not isinstance(entry, list) or len(entry) != 3:
            raise TypeError(f"a member must be [id, voter, address], got {entry!r}")
        members.append(Member(*entry))
    version, term = raw.get("version"), raw.get("term")
    if not _is_int(version) or not _is_int(term):
        raise TypeError("the configuration's version and term must be integers")
    return Configuration(version, term, tuple(members))


def _check_version(version: object, expected: tuple[int, ...], path: str, where: str) -> None:
    if not _is_int(version) or version not in expected:
        raise StateFileError(
            path,
            f"{where}has format version {version!r}; this release reads "
            f"{VERSION_1}, {_VERSION_2} and {VERSION}",
            "Start this node with the release that wrote the file, or a newer one",
        )


def _is_int(value: object) -> TypeGuard[int]:
    # JSON's true and 1.0 compare equal to 1 in Python; only an integer is an integer here.
    return type(value) is int


def _checksum(body: dict[str, Any]) -> int:
    # binascii's CRC-32 is zlib's, and ssl has loaded binascii already; zlib would be extra.
    return binascii.crc32(json.dumps(body, sort_keys=True).encode())

"""Where a node keeps its term, vote and configuration: in memory, or in a crash-proof file."""

from __future__ import annotations

import abc
import binascii
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
from typing import IO, Any, TypeGuard

from ..core._configuration import Configuration, Member
from ..core._errors import DAMAGED_STATE_ADVICE, LOCKED_STATE_ADVICE, StateFileError
from ..core._state import HardState

__all__ = ["FileStore", "MemoryStore", "Store"]

logger = logging.getLogger("almost_raft.store")

_FORMAT = "almost-raft-state"
# Version 3 adds the configuration and the ids of the node and cluster that wrote it.
_VERSION = 3
# Version 2 had the same two slots with only the term and vote; version 1 was one JSON
# object, replaced by a rename on every save. Both are still read, so a node upgrades in
# place, and its first save rewrites the file as version 3.
_VERSION_2 = 2
_VERSION_1 = 1
_VERSION_1_MAX_BYTES = 4096
# A slot is one page: a single pwrite of it is one page-cache copy, so a killed process
# leaves it whole, and only a power loss can tear it.
_SLOT_BYTES = 4096
_SLOTS = 2
_FILE_BYTES = _SLOTS * _SLOT_BYTES


class Store(abc.ABC):
    """Durable storage for one node's :class:`HardState`.

    ``save`` must not return before the state would survive a crash of the process (and,
    for a real deployment, of the machine): the runtime sends a vote only after ``save``
    returns. The runtime never calls two methods at once.

    Attributes:
        blocking: whether ``load`` and ``save`` may block (they touch a disk or the
            network). The runtime then calls them from a worker thread, so a slow disk
            does not stall the event loop; otherwise it calls them on the loop, which
            saves a thread hop per vote. True unless a store says otherwise, as
            :class:`MemoryStore` does; a subclass of it that does I/O must set it back to
            True.
    """

    blocking: bool = True

    @abc.abstractmethod
    def load(self) -> HardState | None:
        """Return the saved state, or ``None`` for a node that has never saved one.

        Raises:
            StateFileError: the saved state exists but cannot be trusted.
        """

    @abc.abstractmethod
    def save(self, state: HardState) -> None:
        """Make ``state`` durable, replacing what was saved before."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless overridden
        """Release what the store holds (files, locks). Saving after close is an error."""


class MemoryStore(Store):
    """Keeps the state in this process only: for tests, simulations and the demo.

    A node restarted with the same ``MemoryStore`` object keeps its term and vote, which
    is how tests model a process restart on a machine whose disk survived.
    """

    blocking = False

    def __init__(self, state: HardState | None = None) -> None:
        self.state = state
        self.saves = 0

    def load(self) -> HardState | None:
        return self.state

    def save(self, state: HardState) -> None:
        self.state = state
        self.saves += 1


class FileStore(Store):
    """Keeps the state in a file of two fixed slots, overwritten in place one at a time.

    The file is exactly two 4096-byte slots (format version 3, the scheme of LMDB's two
    meta pages). Each slot holds one line of JSON -- the term, the vote, the
    configuration, the ids of the node and cluster that wrote it, a sequence number and
    a CRC-32 of them -- padded with spaces, so ``head -c 300`` on the file shows a
    person what is in it; a slot never written is all spaces. A save writes the whole slot
    that does *not* hold the newest state, with the next sequence number, and calls
    ``fdatasync`` once. The file's size and blocks never change, so a save changes no
    metadata: no rename and no directory fsync, whose journal commits on ext4 serialize
    the saves of every process on the machine. Every election waits for such saves.

    A save cut short by a power loss can tear only the slot it was writing, which held
    the older state; the newest acknowledged state is intact in the other slot. So
    :meth:`load` takes the intact slot with the highest sequence number, and when exactly
    one slot is damaged it uses the other and logs a warning naming the file and the
    slot; the next save overwrites the damaged slot. The limit of the scheme: a slot
    damaged *after* its save returned (bit rot of the newest slot) cannot be told from an
    interrupted save, so the older state in the other slot is used, and the node may have
    forgotten its last term change or vote. Both slots damaged, no state in either, a
    file of the wrong size, or a format this release does not read raise
    :class:`StateFileError` naming the file and what to do. A missing file means a fresh
    node. Version-2 files (the same slots without configuration or ids) and version-1
    files (one JSON object, replaced by a rename on every save) are still read.

    With ``node_id`` (and ``cluster_id``) given, the store writes them into every slot,
    and :meth:`load` refuses a file that another node or cluster wrote: taking over
    another node's vote could make this node vote twice in one term. Files written
    without them (version 1 and 2, or by a store given none) are accepted.

    :meth:`load` makes what it returns durable before returning: it writes the slot it
    read back in place and calls ``fdatasync``. A process killed between a save's write
    and its ``fdatasync`` leaves that slot in the page cache only; a node that acted on
    it and then lost power could come back without it and vote twice in one term.

    The first save of a store object replaces the file atomically (a temporary file,
    fsync, rename over the old file, fsync of the directory) with a version-2 file holding
    the state in one slot, unless the file already is an intact version 2: then it goes on
    from the file's highest sequence number. A save replaces the whole file the same way
    when the file was moved or deleted since the last save, and after a save that raised.
    A save that raises may or may not have taken effect: a later ``load`` returns the
    state before it or the state it was saving, as after a crash.

    From its first ``load`` or ``save`` until :meth:`close`, the store holds an exclusive
    lock on ``<path>.lock``, so two processes cannot share one node's state by mistake,
    and from its first save the state file, open for writing; ``close`` releases both.
    A closed store stays closed: ``load`` and ``save`` then raise ``ValueError``, so a
    store cannot quietly take the lock again after its owner let it go.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        node_id: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        #: The state file's path.
        self.path: str = os.fspath(path)
        #: The node and cluster this store belongs to, written into every save.
        self.node_id = node_id
        self.cluster_id = cluster_id
        directory, self._name = os.path.split(self.path)
        self._directory = directory or os.curdir
        self._lock: IO[bytes] | None = None
        self._closed = False
        # The state file, open for writing from the first save on, the slot holding the
        # newest state and its sequence number.
        self._fd: int | None = None
        self._newest_slot = 0
        self._seq = 0
        # After a failed save the page cache may hold a slot that never reached the disk,
        # so the next save trusts nothing in the file and replaces it whole.
        self._replace_whole_file = False

    def load(self) -> HardState | None:
        self._acquire_lock()
        try:
            with open(self.path, "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(
                self.path,
                f"cannot be read ({exc.strerror})",
                "Make it readable by this node's user and start again. "
                + DAMAGED_STATE_ADVICE.replace("Its term", "If it is lost instead, its term"),
            ) from exc
        decoded = _decode_file(raw, self.path)
        self._check_owner(decoded)
        if decoded.passed_over is not None:
            slot, problem = decoded.passed_over
            logger.warning(
                "state file %r: slot %d %s; using slot %d (sequence number %d). A save cut "
                "short by a crash or power loss leaves this, and the next save overwrites "
                "the damaged slot",
                self.path,
                slot,
                problem,
                decoded.slot,
                decoded.seq,
            )
        self._make_durable(raw, decoded)
        return decoded.state

    def _check_owner(self, decoded: _Decoded) -> None:
        for what, ours, theirs in (
            ("node", self.node_id, decoded.node_id),
            ("cluster", self.cluster_id, decoded.cluster_id),
        ):
            if ours is not None and theirs is not None and ours != theirs:
                raise StateFileError(
                    self.path,
                    f"was written by {what} {theirs!r}, not by this {what} ({ours!r})",
                    "Point this node at its own state file. "
                    + DAMAGED_STATE_ADVICE.replace("Its term", "If that is lost, its term"),
                )

    def _make_durable(self, raw: bytes, decoded: _Decoded) -> None:
        """Write the slot just read back in place and ``fdatasync`` it (see the class)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise StateFileError(
                self.path,
                f"cannot be opened for writing ({exc.strerror})",
                "Make it writable by this node's user and start again",
            ) from exc
        try:
            if decoded.version == _VERSION_1:
                # Replaced whole by a rename: its data may be all that is unsynced.
                os.fsync(fd)
            else:
                offset = decoded.slot * _SLOT_BYTES
                _write_all(fd, raw[offset : offset + _SLOT_BYTES], offset)
                if hasattr(os, "fdatasync"):
                    os.fdatasync(fd)
                else:
                    os.fsync(fd)
        except OSError as exc:
            raise StateFileError(
                self.path,
                f"cannot be made durable ({exc.strerror})",
                "Check the disk it is on, then start again",
            ) from exc
        finally:
            os.close(fd)

    def save(self, state: HardState) -> None:
        self._acquire_lock()
        if self._fd is None or not self._still_names_our_file(self._fd):
            self._start_file(state)
        else:
            self._write_slot(self._fd, state)

    def close(self) -> None:
        self._closed = True
        self._drop_file()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _start_file(self, state: HardState) -> None:
        """Save ``state`` into the current-version file found at ``path``, or create one."""
        self._drop_file()
        if not self._replace_whole_file:
            found = self._open_current_file()
            if found is not None:
                fd, decoded = found
                self._fd, self._newest_slot, self._seq = fd, decoded.slot, decoded.seq
                self._write_slot(fd, state)
                return
        self._create_file(state)

    def _open_current_file(self) -> tuple[int, _Decoded] | None:
        """The open file and what it holds, or ``None`` unless it is an intact version 3."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            decoded = _decode_file(os.pread(fd, _FILE_BYTES + 1, 0), self.path)
        except (OSError, StateFileError):
            decoded = None
        if decoded is None or decoded.version != _VERSION:
            os.close(fd)
            return None
        return fd, decoded

    def _create_file(self, state: HardState) -> None:
        """Replace the file atomically with a new one holding ``state`` in slot 0."""
        directory = self._directory
        tmp = os.path.join(directory, f".{self._name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            # Both slots are written with real bytes: blocks that were only reserved
            # (fallocate) would need a metadata change on their first overwrite.
            _write_all(fd, self._encode_state(state, seq=1), 0)
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            # The old file is untouched; do not leave a half-written copy beside it.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            _fsync_directory(directory)
        except BaseException:
            os.close(fd)
            self._replace_whole_file = True
            raise
        self._fd, self._newest_slot, self._seq = fd, 0, 1
        self._replace_whole_file = False

    def _write_slot(self, fd: int, state: HardState) -> None:
        """Overwrite the slot that does not hold the newest state, and make it durable."""
        slot = 1 - self._newest_slot
        seq = self._seq + 1
        try:
            _write_all(fd, self._encode_slot(state, seq), slot * _SLOT_BYTES)
            # The size and the blocks are unchanged, so fdatasync flushes only the data
            # (not even the modification time): no journal commit on ext4.
            if hasattr(os, "fdatasync"):
                os.fdatasync(fd)
            else:
                os.fsync(fd)
        except BaseException:
            # After a failed fdatasync Linux may mark the page clean while the disk never
            # got it, and a reread would trust it: replace the whole file next time.
            self._replace_whole_file = True
            self._drop_file()
            raise
        self._newest_slot, self._seq = slot, seq

    def _encode_slot(self, state: HardState, seq: int) -> bytes:
        return encode_slot(state, seq, node_id=self.node_id, cluster_id=self.cluster_id)

    def _encode_state(self, state: HardState, seq: int) -> bytes:
        return self._encode_slot(state, seq) + _UNUSED_SLOT

    def _still_names_our_file(self, fd: int) -> bool:
        # A file moved aside or deleted while the node runs must not swallow the saves
        # that follow: the next start would find no state and could vote twice.
        try:
            named = os.stat(self.path)
        except OSError:
            return False
        ours = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (ours.st_dev, ours.st_ino)

    def _drop_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _acquire_lock(self) -> None:
        if self._closed:
            raise ValueError(f"the state store for {self.path!r} is closed")
        if self._lock is not None:
            return
        os.makedirs(self._directory, exist_ok=True)
        lock = open(os.path.join(self._directory, self._name + ".lock"), "a+b")  # noqa: SIM115
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise StateFileError(
                self.path,
                "is in use by another running node (its lock file is held)",
                LOCKED_STATE_ADVICE,
            ) from exc
        self._lock = lock
        # Only the lock holder writes temporary files, so any found now were left by a
        # process killed in the middle of a save; the real file was never touched by them.
        prefix = f".{self._name}.tmp-"
        for name in os.listdir(self._directory):
            if name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._directory, name))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    written = os.pwrite(fd, data, offset)
    if written != len(data):
        # A regular file takes the whole write unless the disk is full or failing.
        raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes")


def _fsync_directory(directory: str) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        "version": _VERSION,
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
    if len(line) >= _SLOT_BYTES:
        raise ValueError(
            f"a state of {len(line)} bytes does not fit a {_SLOT_BYTES}-byte slot; "
            "use shorter node ids and addresses"
        )
    return line.ljust(_SLOT_BYTES - 1) + b"\n"


def encode_state(state: HardState, seq: int = 1) -> bytes:
    """The bytes of a whole new state file: ``state`` in slot 0, slot 1 unused."""
    return encode_slot(state, seq) + _UNUSED_SLOT


_UNUSED_SLOT = b" " * (_SLOT_BYTES - 1) + b"\n"


def decode_state(raw: bytes, path: str) -> HardState:
    """The newest state in a state file's bytes (format version 1, 2 or 3).

    This is the decoding :meth:`FileStore.load` uses, without the lock and without the
    warning about a damaged slot, for a reader watching the file of a running node.

    Raises:
        StateFileError: the bytes hold no state that can be trusted; the message says why.
    """
    return _decode_file(raw, path).state


@dataclasses.dataclass(frozen=True, slots=True)
class _Decoded:
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


def _decode_file(raw: bytes, path: str) -> _Decoded:
    if len(raw) == _FILE_BYTES:
        return _decode_slots(raw, path)
    if len(raw) > _FILE_BYTES:
        raise StateFileError(
            path, f"is {len(raw)} bytes, larger than a state file ({_FILE_BYTES} bytes)"
        )
    if len(raw) > _VERSION_1_MAX_BYTES:
        raise StateFileError(
            path,
            f"is {len(raw)} bytes, but a state file has {_FILE_BYTES} (format versions 2 "
            f"and 3) or at most {_VERSION_1_MAX_BYTES} (format version 1); it is truncated "
            "or damaged",
        )
    return _decode_version_1(raw, path)


def _decode_version_1(raw: bytes, path: str) -> _Decoded:
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
            f"{_FILE_BYTES}; it is truncated",
        )
    _check_version(version, (_VERSION_1,), path, "")
    stored = body.pop("crc32", None)
    if stored != _checksum(body):
        raise StateFileError(path, "fails its checksum; it is damaged")
    try:
        state = HardState(body["term"], body["voted_for"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(path, f"holds an invalid state ({exc})") from exc
    return _Decoded(state, _VERSION_1)


_SLOT_VERSIONS = (_VERSION_2, _VERSION)


@dataclasses.dataclass(frozen=True, slots=True)
class _Slot:
    seq: int
    version: int
    state: HardState
    node_id: str | None
    cluster_id: str | None


def _decode_slots(raw: bytes, path: str) -> _Decoded:
    found: list[tuple[int, int, _Slot]] = []
    damaged: list[tuple[int, str]] = []
    for slot in range(_SLOTS):
        try:
            decoded = _decode_slot(raw[slot * _SLOT_BYTES : (slot + 1) * _SLOT_BYTES], path, slot)
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
    return _Decoded(
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
            f"{_VERSION_1}, {_VERSION_2} and {_VERSION}",
            "Start this node with the release that wrote the file, or a newer one",
        )


def _is_int(value: object) -> TypeGuard[int]:
    # JSON's true and 1.0 compare equal to 1 in Python; only an integer is an integer here.
    return type(value) is int


def _checksum(body: dict[str, Any]) -> int:
    # binascii's CRC-32 is zlib's, and ssl has loaded binascii already; zlib would be extra.
    return binascii.crc32(json.dumps(body, sort_keys=True).encode())

"""Where a node keeps its term, vote and configuration: in memory, or in a crash-proof file."""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import logging
import os
from typing import IO

from ..core._errors import DAMAGED_STATE_ADVICE, LOCKED_STATE_ADVICE, StateFileError
from ..core._state import HardState
from ._state_file import (
    FILE_BYTES,
    SLOT_BYTES,
    UNUSED_SLOT,
    VERSION,
    VERSION_1,
    Decoded,
    decode_file,
    decode_state,
    encode_slot,
    encode_state,
)

# The state file's format is re-exported for the readers of a running node's file.
__all__ = ["FileStore", "MemoryStore", "Store", "decode_state", "encode_slot", "encode_state"]

logger = logging.getLogger("almost_raft.store")


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
        decoded = decode_file(raw, self.path)
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

    def _check_owner(self, decoded: Decoded) -> None:
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

    def _make_durable(self, raw: bytes, decoded: Decoded) -> None:
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
            if decoded.version == VERSION_1:
                # Replaced whole by a rename: its data may be all that is unsynced.
                os.fsync(fd)
            else:
                offset = decoded.slot * SLOT_BYTES
                _write_all(fd, raw[offset : offset + SLOT_BYTES], offset)
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

    def _open_current_file(self) -> tuple[int, Decoded] | None:
        """The open file and what it holds, or ``None`` unless it is an intact version 3."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            decoded = decode_file(os.pread(fd, FILE_BYTES + 1, 0), self.path)
        except (OSError, StateFileError):
            decoded = None
        if decoded is None or decoded.version != VERSION:
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
            _write_all(fd, self._encode_slot(state, seq), slot * SLOT_BYTES)
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
        return self._encode_slot(state, seq) + UNUSED_SLOT

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

"""Where a node keeps its term and vote: in memory, or in a file that survives crashes."""

from __future__ import annotations

import abc
import binascii
import contextlib
import fcntl
import json
import os
from typing import IO, Any

from ._errors import StateFileError
from ._state import HardState

__all__ = ["FileStore", "MemoryStore", "Store"]

_FORMAT = "almost-raft-state"
_VERSION = 1
_MAX_FILE_BYTES = 4096


class Store(abc.ABC):
    """Durable storage for one node's :class:`HardState`.

    ``save`` must not return before the state would survive a crash of the process (and,
    for a real deployment, of the machine): the runtime sends a vote only after ``save``
    returns. The runtime calls ``save`` from a worker thread, so a slow disk does not stall
    the event loop, and never calls two methods at once.
    """

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

    def __init__(self, state: HardState | None = None) -> None:
        self.state = state
        self.saves = 0

    def load(self) -> HardState | None:
        return self.state

    def save(self, state: HardState) -> None:
        self.state = state
        self.saves += 1


class FileStore(Store):
    """Keeps the state in one small JSON file, replaced atomically on every save.

    A save writes a temporary file in the same directory, fsyncs it, renames it over the
    old file and fsyncs the directory, so after a crash the file holds either the old or
    the new state, never a mixture. A checksum catches a file damaged afterwards. A
    missing file means a fresh node; a file that is damaged, truncated or of another
    format raises :class:`StateFileError` naming the file and what to do.

    From its first ``load`` or ``save`` until :meth:`close`, the store holds an exclusive
    lock on ``<path>.lock``, so two processes cannot share one node's state by mistake.
    A closed store stays closed: ``load`` and ``save`` then raise ``ValueError``, so a
    store cannot quietly take the lock again after its owner let it go.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: The state file's path.
        self.path: str = os.fspath(path)
        directory, self._name = os.path.split(self.path)
        self._directory = directory or os.curdir
        self._lock: IO[bytes] | None = None
        self._closed = False

    def load(self) -> HardState | None:
        self._acquire_lock()
        try:
            with open(self.path, "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(self.path, f"cannot be read ({exc.strerror})") from exc
        return decode_state(raw, self.path)

    def save(self, state: HardState) -> None:
        self._acquire_lock()
        tmp = os.path.join(self._directory, f".{self._name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as file:
                file.write(encode_state(state))
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            # The old file is untouched; do not leave a half-written copy beside it.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        self._closed = True
        if self._lock is not None:
            self._lock.close()
            self._lock = None

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
                self.path, "is in use by another running node (its lock file is held)"
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


def encode_state(state: HardState) -> bytes:
    """The file's bytes for ``state``: one JSON object with a CRC-32 of its fields."""
    body: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "term": state.term,
        "voted_for": state.voted_for,
    }
    body["crc32"] = _checksum(body)
    return (json.dumps(body, sort_keys=True) + "\n").encode()


def decode_state(raw: bytes, path: str) -> HardState:
    """Parse a state file's bytes, or raise :class:`StateFileError` saying what is wrong."""
    if len(raw) > _MAX_FILE_BYTES:
        raise StateFileError(path, f"is {len(raw)} bytes, far larger than a state file")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(path, f"is not valid JSON ({exc}); it is damaged") from exc
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise StateFileError(path, "is not an almost-raft state file")
    version = body.get("version")
    # JSON's true and 1.0 compare equal to 1 in Python; only the integer 1 is version 1.
    if type(version) is not int or version != _VERSION:
        raise StateFileError(path, f"has format version {version!r}; this release reads {_VERSION}")
    stored = body.pop("crc32", None)
    if stored != _checksum(body):
        raise StateFileError(path, "fails its checksum; it is damaged")
    try:
        return HardState(body["term"], body["voted_for"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(path, f"holds an invalid state ({exc})") from exc


def _checksum(body: dict[str, Any]) -> int:
    return binascii.crc32(json.dumps(body, sort_keys=True).encode())

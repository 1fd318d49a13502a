"""Stores: the term and vote survive, and a state file that cannot be trusted stops the node."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from almost_raft import FileStore, HardState, MemoryStore, StateFileError
from almost_raft._store import encode_state


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "state.json"


def write_body(path: Path, body: dict[str, Any], *, fix_checksum: bool = True) -> None:
    """Write a state file with arbitrary fields, with a checksum that matches them."""
    if fix_checksum:
        body = {k: v for k, v in body.items() if k != "crc32"}
        body["crc32"] = zlib.crc32(json.dumps(body, sort_keys=True).encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, sort_keys=True))


def good_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode_state(HardState(7, "b")))
    body.update(changes)
    return body


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("state", [HardState(), HardState(1, "a"), HardState(2**63 - 1, "ü" * 256)])
def test_file_store_round_trip(path: Path, state: HardState) -> None:
    store = FileStore(path)
    store.save(state)
    store.close()
    reopened = FileStore(path)
    assert reopened.load() == state
    reopened.close()


def test_later_save_replaces_the_earlier(path: Path) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    store.save(HardState(2, None))
    assert store.load() == HardState(2, None)
    store.close()


def test_missing_file_is_a_fresh_node(path: Path) -> None:
    store = FileStore(path)
    assert store.load() is None
    store.close()


def test_the_written_file_is_small_readable_json(path: Path) -> None:
    store = FileStore(path)
    store.save(HardState(3, "c"))
    store.close()
    body = json.loads(path.read_text())
    assert body["term"] == 3
    assert body["voted_for"] == "c"
    assert path.stat().st_size < 200


# ---------------------------------------------------------------------- corrupt files

CORRUPT_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("wrong format", good_body(format="something-else"), "not an almost-raft state file"),
    ("no format", {"term": 1, "voted_for": None}, "not an almost-raft state file"),
    ("wrong version", good_body(version=2), "format version 2"),
    ("version as text", good_body(version="1"), "format version '1'"),
    ("version as bool", good_body(version=True), "format version True"),
    ("version as float", good_body(version=1.0), "format version 1.0"),
    ("term as text", good_body(term="7"), "invalid state"),
    ("term as float", good_body(term=7.0), "invalid state"),
    ("term as bool", good_body(term=True), "invalid state"),
    ("negative term", good_body(term=-1), "invalid state"),
    ("term too large", good_body(term=2**63), "invalid state"),
    ("vote as number", good_body(voted_for=5), "invalid state"),
    ("empty vote", good_body(voted_for=""), "invalid state"),
    ("missing term", {k: v for k, v in good_body().items() if k != "term"}, "invalid state"),
]


@pytest.mark.parametrize(
    ("body", "problem"),
    [(body, problem) for _, body, problem in CORRUPT_BODIES],
    ids=[name for name, _, _ in CORRUPT_BODIES],
)
def test_state_file_with_bad_fields_is_refused(
    path: Path, body: dict[str, Any], problem: str
) -> None:
    write_body(path, body)
    assert_refused(path, problem)


CORRUPT_BYTES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not valid JSON"),
    ("truncated", encode_state(HardState(7, "b"))[:20], "not valid JSON"),
    ("garbage", b"\x00\xff\xfe garbage", "not valid JSON"),
    ("not an object", b"[1, 2, 3]", "not an almost-raft state file"),
    ("huge", b" " * 10_000, "larger than a state file"),
    (
        "flipped digit",
        encode_state(HardState(7, "b")).replace(b'"term": 7', b'"term": 8'),
        "fails its checksum",
    ),
]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [(raw, problem) for _, raw, problem in CORRUPT_BYTES],
    ids=[name for name, _, _ in CORRUPT_BYTES],
)
def test_damaged_state_file_is_refused(path: Path, raw: bytes, problem: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(raw)
    assert_refused(path, problem)


def test_wrong_checksum_is_refused(path: Path) -> None:
    write_body(path, good_body(crc32=12345), fix_checksum=False)
    assert_refused(path, "fails its checksum")


def test_unreadable_state_file_is_refused(path: Path) -> None:
    path.mkdir(parents=True)
    assert_refused(path, "cannot be read")


def assert_refused(path: Path, problem: str) -> None:
    store = FileStore(path)
    with pytest.raises(StateFileError) as info:
        store.load()
    store.close()
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert "move the file aside" in message
    assert info.value.path == str(path)


# ---------------------------------------------------------------------- atomic writes


def test_failed_write_leaves_the_old_file_and_no_temporary(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        store.save(HardState(2, "b"))
    monkeypatch.undo()
    assert store.load() == HardState(1, "a")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    store.close()


def test_failed_rename_leaves_the_old_file_and_no_temporary(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="Input/output"):
        store.save(HardState(2, "b"))
    monkeypatch.undo()
    assert store.load() == HardState(1, "a")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    store.close()


# ---------------------------------------------------------------------- one owner at a time


def test_second_store_on_the_same_path_is_refused_while_the_first_is_open(path: Path) -> None:
    first = FileStore(path)
    first.save(HardState(1, "a"))
    second = FileStore(path)
    with pytest.raises(StateFileError, match="in use by another running node"):
        second.load()
    with pytest.raises(StateFileError, match="in use by another running node"):
        second.save(HardState(9, "z"))
    first.close()
    assert second.load() == HardState(1, "a")
    second.close()


def test_closed_store_cannot_be_used(path: Path) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.save(HardState(2, "a"))
    with pytest.raises(ValueError, match="closed"):
        store.load()
    store.close()  # closing twice is harmless
    assert FileStore(path).load() == HardState(1, "a")


# ---------------------------------------------------------------------- memory


def test_memory_store_round_trip() -> None:
    store = MemoryStore()
    assert store.load() is None
    store.save(HardState(1, "a"))
    store.save(HardState(2, None))
    assert store.load() == HardState(2, None)
    assert store.saves == 2
    store.close()


def test_memory_store_starts_from_a_given_state() -> None:
    assert MemoryStore(HardState(4, "c")).load() == HardState(4, "c")


def test_temporary_files_left_by_a_killed_save_are_removed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "node.state"
    store = FileStore(path)
    store.save(HardState(4, "b"))
    store.close()
    leftover = tmp_path / ".node.state.tmp-99999"
    leftover.write_bytes(b"half a save")
    reopened = FileStore(path)
    assert reopened.load() == HardState(4, "b")
    assert not leftover.exists()
    reopened.close()

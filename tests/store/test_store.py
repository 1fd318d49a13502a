"""Stores: the term and vote survive, and a state file that cannot be trusted stops the node."""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from almost_raft import FileStore, HardState, MemoryStore, StateFileError
from almost_raft.core._errors import DAMAGED_STATE_ADVICE, LOCKED_STATE_ADVICE
from almost_raft.store._store import encode_slot, encode_state

SLOT = 4096


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "state.json"


def with_checksum(body: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if k != "crc32"}
    body["crc32"] = zlib.crc32(json.dumps(body, sort_keys=True).encode())
    return body


def write_body(path: Path, body: dict[str, Any], *, fix_checksum: bool = True) -> None:
    """Write a version-1 state file with arbitrary fields, with a checksum that matches them."""
    if fix_checksum:
        body = with_checksum(body)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, sort_keys=True))


def good_body(**changes: Any) -> dict[str, Any]:
    """The body of a version-1 file, as the earlier release wrote it."""
    body: dict[str, Any] = with_checksum(
        {"format": "almost-raft-state", "version": 1, "term": 7, "voted_for": "b"}
    )
    body.update(changes)
    return body


def slot_of(body: dict[str, Any]) -> bytes:
    """A slot holding ``body`` as it is, padded like the store pads it."""
    return json.dumps(body, sort_keys=True).encode().ljust(SLOT - 1) + b"\n"


def slot_body(**changes: Any) -> dict[str, Any]:
    """The body of an intact version-3 slot, with ``changes`` and a checksum to match."""
    body: dict[str, Any] = json.loads(encode_slot(HardState(7, "b"), 1))
    body.update(changes)
    return with_checksum(body)


UNUSED = b" " * (SLOT - 1) + b"\n"


def write_slots(path: Path, first: bytes, second: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(first + second)


def read_slots(path: Path) -> list[dict[str, Any] | None]:
    """Each slot's JSON body, ``None`` for an unused slot."""
    raw = path.read_bytes()
    assert len(raw) == 2 * SLOT
    slots = [raw[:SLOT], raw[SLOT:]]
    return [json.loads(slot) if slot.strip() else None for slot in slots]


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


def test_the_written_file_is_two_slots_of_readable_json(path: Path) -> None:
    store = FileStore(path)
    store.save(HardState(3, "c"))
    store.close()
    assert path.stat().st_size == 2 * SLOT
    first_line = path.read_bytes()[:300].split(b"\n")[0]
    body = json.loads(first_line)
    assert (body["term"], body["voted_for"], body["seq"], body["version"]) == (3, "c", 1, 3)
    assert read_slots(path)[1] is None


# ---------------------------------------------------------------------- version 1


def test_a_version_1_file_is_read_and_the_first_save_rewrites_it_as_version_3(
    path: Path,
) -> None:
    write_body(path, good_body())
    store = FileStore(path)
    assert store.load() == HardState(7, "b")
    store.save(HardState(8, "c"))
    store.close()
    slots = read_slots(path)
    assert slots[0] is not None
    assert (slots[0]["version"], slots[0]["seq"], slots[0]["term"]) == (3, 1, 8)
    assert slots[1] is None
    reopened = FileStore(path)
    assert reopened.load() == HardState(8, "c")
    reopened.close()


# ---------------------------------------------------------------------- corrupt files

CORRUPT_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("wrong format", good_body(format="something-else"), "not an almost-raft state file"),
    ("no format", {"term": 1, "voted_for": None}, "not an almost-raft state file"),
    ("wrong version", good_body(version=4), "format version 4"),
    ("version 3 but small", good_body(version=3), "it is truncated"),
    ("version 2 but small", good_body(version=2), "it is truncated"),
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
def test_version_1_file_with_bad_fields_is_refused(
    path: Path, body: dict[str, Any], problem: str
) -> None:
    write_body(path, body)
    assert_refused(path, problem)


CORRUPT_BYTES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not valid JSON"),
    ("truncated", encode_state(HardState(7, "b"))[:20], "not valid JSON"),
    ("one slot of two", encode_state(HardState(7, "b"))[:SLOT], "it is truncated"),
    ("between the sizes", encode_state(HardState(7, "b"))[: SLOT + 1], "it is truncated or"),
    ("one byte too many", encode_state(HardState(7, "b")) + b" ", "larger than a state file"),
    ("garbage", b"\x00\xff\xfe garbage", "not valid JSON"),
    ("not an object", b"[1, 2, 3]", "not an almost-raft state file"),
    ("huge", b" " * 10_000, "larger than a state file"),
    (
        "flipped digit",
        encode_state(HardState(7, "b")).replace(b'"term": 7', b'"term": 8'),
        "slot 0 fails its checksum",
    ),
    ("no used slot", UNUSED * 2, "holds no state in either slot"),
    ("zeros", b"\x00" * (2 * SLOT), "no intact slot"),
    (
        "both slots damaged",
        b"x" * SLOT + encode_slot(HardState(7, "b"), 2)[:100] + b"\x00" * (SLOT - 100),
        "slot 0 is not valid JSON",
    ),
    (
        "a damaged slot beside an unused one",
        UNUSED + encode_slot(HardState(7, "b"), 2).replace(b'"seq": 2', b'"seq": 3'),
        "slot 1 fails its checksum",
    ),
    (
        "one sequence number in both slots",
        encode_slot(HardState(7, "b"), 4) + encode_slot(HardState(8, "b"), 4),
        "sequence number 4 in both slots",
    ),
    (
        "a newer format beside an intact slot",
        encode_slot(HardState(7, "b"), 1) + slot_of(slot_body(version=4, seq=2)),
        "slot 1 has format version 4",
    ),
    (
        "version as text in a slot",
        slot_of(slot_body(version="2")) + UNUSED,
        "slot 0 has format version '2'",
    ),
    (
        "a foreign file of the right size",
        b"{}".ljust(2 * SLOT),
        "slot 0 does not hold an almost-raft state",
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


def test_damaged_state_file_advice_is_to_rejoin_as_a_new_member(path: Path) -> None:
    write_body(path, good_body(crc32=12345), fix_checksum=False)
    store = FileStore(path)
    with pytest.raises(StateFileError) as info:
        store.load()
    store.close()
    assert info.value.advice == DAMAGED_STATE_ADVICE
    message = str(info.value)
    assert "must rejoin as a new member" in message
    assert "remove this node from the cluster, then add it back" in message
    assert "Do not delete or move the file and restart it under the same id" in message


def assert_refused(path: Path, problem: str) -> None:
    store = FileStore(path)
    with pytest.raises(StateFileError) as info:
        store.load()
    store.close()
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert info.value.advice in message
    # Restarting empty under the same id could vote again in a term already voted in, so
    # no advice may suggest it (as "move the file aside and restart" once did).
    assert "move the file aside" not in message
    assert "member with term 0" not in message
    assert info.value.path == str(path)


# ---------------------------------------------------------------------- two slots


def test_saves_alternate_between_the_slots_with_a_growing_sequence_number(path: Path) -> None:
    store = FileStore(path)
    for term in range(1, 6):
        store.save(HardState(term, f"n{term}"))
        slots = read_slots(path)
        newest = (term - 1) % 2
        newest_body = slots[newest]
        assert newest_body is not None
        assert (newest_body["seq"], newest_body["term"]) == (term, term)
        older = slots[1 - newest]
        if term == 1:
            assert older is None
        else:
            assert older is not None
            assert (older["seq"], older["term"]) == (term - 1, term - 1)
        assert store.load() == HardState(term, f"n{term}")
    store.close()


TORN_NEWEST_SLOTS: list[tuple[str, bytes]] = [
    # A torn write: the start of a new slot over the old one.
    ("torn", encode_slot(HardState(3, "c"), 3)[:60] + encode_slot(HardState(2, "b"), 2)[60:]),
    ("garbage", b"\x00\xff" * (SLOT // 2)),
    ("checksum", encode_slot(HardState(2, "b"), 2).replace(b'"term": 2', b'"term": 9')),
    ("fields", slot_of(slot_body(seq=2, term=-1))),
    ("sequence number", slot_of(slot_body(seq=0))),
]


@pytest.mark.parametrize(
    "damaged", [raw for _, raw in TORN_NEWEST_SLOTS], ids=[name for name, _ in TORN_NEWEST_SLOTS]
)
def test_a_damaged_slot_falls_back_to_the_other_with_a_warning(
    path: Path, damaged: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    store.save(HardState(2, "b"))
    store.close()
    assert len(damaged) == SLOT
    write_slots(path, path.read_bytes()[:SLOT], damaged)
    reopened = FileStore(path)
    with caplog.at_level(logging.WARNING, logger="almost_raft.store"):
        assert reopened.load() == HardState(1, "a")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert "slot 1" in warnings[0]
    assert "using slot 0" in warnings[0]
    # The next save overwrites the damaged slot; both are intact again.
    caplog.clear()
    reopened.save(HardState(3, "c"))
    assert reopened.load() == HardState(3, "c")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [body and body["seq"] for body in read_slots(path)] == [1, 2]
    reopened.close()


def test_a_store_opened_on_an_existing_file_continues_its_sequence(path: Path) -> None:
    store = FileStore(path)
    for term in (1, 2, 3):
        store.save(HardState(term, None))
    store.close()
    inode = path.stat().st_ino
    # No load first: the save alone finds the newest slot and its sequence number.
    reopened = FileStore(path)
    reopened.save(HardState(4, "d"))
    reopened.close()
    assert path.stat().st_ino == inode
    slots = read_slots(path)
    assert slots[0] is not None
    assert slots[1] is not None
    assert (slots[0]["seq"], slots[0]["term"]) == (3, 3)
    assert (slots[1]["seq"], slots[1]["term"], slots[1]["voted_for"]) == (4, 4, "d")


def test_saves_after_the_first_overwrite_the_file_in_place(path: Path) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    first = path.stat()
    for term in range(2, 6):
        store.save(HardState(term, "a"))
        now = path.stat()
        # A rename would give the path a new inode; the size never changes either.
        assert (now.st_ino, now.st_size) == (first.st_ino, 2 * SLOT)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    store.close()


def test_a_save_after_the_first_is_one_fdatasync_and_no_directory_fsync(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    calls: list[str] = []
    real_fdatasync, real_fsync, real_replace = os.fdatasync, os.fsync, os.replace

    def counting_fdatasync(fd: int) -> None:
        calls.append("fdatasync")
        real_fdatasync(fd)

    def counting_fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def counting_replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    monkeypatch.setattr(os, "replace", counting_replace)
    for term in range(2, 5):
        store.save(HardState(term, "a"))
    monkeypatch.undo()
    assert calls == ["fdatasync"] * 3
    store.close()


def test_a_state_file_moved_aside_while_open_is_written_again(path: Path) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    path.rename(path.with_name("moved.json"))
    store.save(HardState(2, "b"))
    assert store.load() == HardState(2, "b")
    path.unlink()
    store.save(HardState(3, "c"))
    assert store.load() == HardState(3, "c")
    store.close()


# ---------------------------------------------------------------------- failed saves


def test_failed_first_write_leaves_the_old_file_and_no_temporary(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_body(path, good_body())
    before = path.read_bytes()
    store = FileStore(path)

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        store.save(HardState(8, "c"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert store.load() == HardState(7, "b")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    store.close()


def test_failed_rename_leaves_the_old_file_and_no_temporary(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_body(path, good_body())
    before = path.read_bytes()
    store = FileStore(path)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="Input/output"):
        store.save(HardState(8, "c"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert store.load() == HardState(7, "b")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    store.close()


def broken_fdatasync(fd: int) -> None:
    raise OSError(5, "Input/output error")


def short_pwrite(fd: int, data: bytes, offset: int) -> int:
    return 0


@pytest.mark.parametrize(
    ("name", "broken"),
    [("fdatasync", broken_fdatasync), ("pwrite", short_pwrite)],
    ids=["fdatasync fails", "short write"],
)
def test_after_a_failed_slot_write_the_next_save_replaces_the_whole_file(
    path: Path, monkeypatch: pytest.MonkeyPatch, name: str, broken: object
) -> None:
    store = FileStore(path)
    store.save(HardState(1, "a"))
    inode = path.stat().st_ino
    monkeypatch.setattr(os, name, broken)
    with pytest.raises(OSError, match=r"Input/output|short write"):
        store.save(HardState(2, "b"))
    monkeypatch.undo()
    # Like a crash in the middle of a save: the old state or the new one, nothing else.
    assert store.load() in (HardState(1, "a"), HardState(2, "b"))
    store.save(HardState(3, "c"))
    # The page cache may hold a slot the disk never got: the file was replaced, not reused.
    assert path.stat().st_ino != inode
    assert store.load() == HardState(3, "c")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    store.close()


# ---------------------------------------------------------------------- one owner at a time


def test_second_store_on_the_same_path_is_refused_while_the_first_is_open(path: Path) -> None:
    first = FileStore(path)
    first.save(HardState(1, "a"))
    second = FileStore(path)
    with pytest.raises(StateFileError, match="in use by another running node") as info:
        second.load()
    assert info.value.advice == LOCKED_STATE_ADVICE
    assert "Another node is running with this id" in str(info.value)
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

"""Format version 3: the configuration and the owner's ids in the state file, version 2
still read, another node's file refused, and a loaded slot made durable."""

from __future__ import annotations

import binascii
import json
import os
from pathlib import Path
from typing import Any

import pytest

from almost_raft import Configuration, FileStore, HardState, Member, StateFileError
from almost_raft.store._store import encode_slot

SLOT = 4096
UNUSED = b" " * (SLOT - 1) + b"\n"
CONFIG = Configuration(
    4, 2, (Member("a", True, "10.0.0.1:7000"), Member("b"), Member("c", False, "c.lan:7000"))
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state"


def version_2_slot(term: int, voted_for: str | None, seq: int) -> bytes:
    """A slot as the previous release wrote it: term and vote only."""
    body: dict[str, Any] = {
        "format": "almost-raft-state",
        "version": 2,
        "seq": seq,
        "term": term,
        "voted_for": voted_for,
    }
    body["crc32"] = binascii.crc32(json.dumps(body, sort_keys=True).encode())
    return json.dumps(body, sort_keys=True).encode().ljust(SLOT - 1) + b"\n"


def test_the_configuration_and_ids_survive_a_restart(path: Path) -> None:
    store = FileStore(path, node_id="a", cluster_id="prod")
    store.save(HardState(2, "a", CONFIG))
    store.save(HardState(3, None, CONFIG))
    store.close()
    reopened = FileStore(path, node_id="a", cluster_id="prod")
    assert reopened.load() == HardState(3, None, CONFIG)
    reopened.close()
    newest = json.loads(path.read_bytes()[SLOT:].strip())
    assert (newest["version"], newest["node_id"], newest["cluster_id"]) == (3, "a", "prod")
    assert newest["configuration"]["members"][0] == ["a", True, "10.0.0.1:7000"]


def test_a_version_2_file_loads_and_the_first_save_rewrites_it_as_version_3(
    path: Path,
) -> None:
    path.write_bytes(version_2_slot(5, "b", 1) + version_2_slot(6, "c", 2))
    store = FileStore(path, node_id="a")
    assert store.load() == HardState(6, "c")
    store.save(HardState(7, "c", CONFIG))
    store.close()
    raw = path.read_bytes()
    assert len(raw) == 2 * SLOT
    assert json.loads(raw[:SLOT])["version"] == 3
    assert raw[SLOT:] == UNUSED
    assert FileStore(path, node_id="a").load() == HardState(7, "c", CONFIG)


@pytest.mark.parametrize(
    ("ours", "written", "named"),
    [
        ({"node_id": "b"}, {"node_id": "a"}, "node 'a'"),
        ({"node_id": "a", "cluster_id": "test"}, {"node_id": "a", "cluster_id": "prod"}, "'prod'"),
    ],
)
def test_a_file_of_another_node_or_cluster_is_refused(
    path: Path, ours: dict[str, str], written: dict[str, str], named: str
) -> None:
    writer = FileStore(path, **written)
    writer.save(HardState(9, "a"))
    writer.close()
    store = FileStore(path, **ours)
    with pytest.raises(StateFileError) as info:
        store.load()
    store.close()
    message = str(info.value)
    assert named in message
    assert "its own state file" in message
    assert "add it back" in message


def test_a_file_without_ids_or_a_store_without_them_is_accepted(path: Path) -> None:
    anonymous = FileStore(path)
    anonymous.save(HardState(1, "a"))
    anonymous.close()
    named = FileStore(path, node_id="a", cluster_id="prod")
    assert named.load() == HardState(1, "a")
    named.save(HardState(2, "a"))
    named.close()
    unnamed = FileStore(path)
    assert unnamed.load() == HardState(2, "a")
    unnamed.close()


def test_load_rewrites_the_slot_it_read_and_syncs_it(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A save killed between its pwrite and its fdatasync leaves a slot only the page
    # cache holds; load must make it durable before the node acts on it.
    path.write_bytes(encode_slot(HardState(4, "a"), 1) + encode_slot(HardState(5, "b"), 2))
    writes: list[tuple[int, int]] = []
    syncs: list[int] = []
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        writes.append((offset, len(data)))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd))
    store = FileStore(path)
    assert store.load() == HardState(5, "b")
    store.close()
    assert writes == [(SLOT, SLOT)]
    assert len(syncs) == 1
    assert json.loads(path.read_bytes()[SLOT:])["term"] == 5


def test_a_damaged_configuration_is_a_damaged_slot(path: Path) -> None:
    good = encode_slot(HardState(4, "a"), 1)
    body = json.loads(encode_slot(HardState(5, "b", CONFIG), 2))
    body["configuration"]["members"][0] = ["a", "yes", None]
    body.pop("crc32")
    body["crc32"] = binascii.crc32(json.dumps(body, sort_keys=True).encode())
    path.write_bytes(good + json.dumps(body, sort_keys=True).encode().ljust(SLOT - 1) + b"\n")
    store = FileStore(path)
    # The older slot is used, as after a torn write of the newer one.
    assert store.load() == HardState(4, "a")
    store.close()

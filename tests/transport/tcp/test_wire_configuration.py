"""The wire's longer forms: vote requests, heartbeats and answers that name a
configuration, read back exactly, and malformed ones refused as one WireError."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from almost_raft import Configuration, HeartBeat, HeartBeatResponse, Member, RequestVote
from almost_raft.core._configuration import MAX_MEMBERS
from almost_raft.core._messages import PeerMessage
from almost_raft.transport.tcp._wire import FrameProblem, WireError, decode_message, encode_message

FULL = Configuration(
    7,
    3,
    tuple(
        Member(f"node-{i:02}", i % 3 != 0, None if i % 2 else f"10.0.0.{i}:7000")
        for i in range(MAX_MEMBERS // 2)
    ),
)


@pytest.mark.parametrize(
    "message",
    [
        RequestVote(4, "a", config_term=3, config_version=7),
        RequestVote(1, "a", pre_vote=True, voters=("a", "b", "c")),
        HeartBeat(3, "a", configuration=FULL, committed_version=6),
        HeartBeat(3, "a", 1500, committed_version=6),
        HeartBeatResponse(3, "b", 3, 7),
    ],
)
def test_messages_naming_a_configuration_survive_the_wire(message: PeerMessage) -> None:
    assert decode_message(encode_message(message)[4:]) == message


def test_messages_at_their_defaults_keep_the_short_form() -> None:
    # What an earlier release reads: the same bytes as before.
    assert msgpack.unpackb(encode_message(HeartBeat(3, "a"))[4:]) == [3, 3, "a"]
    assert msgpack.unpackb(encode_message(HeartBeatResponse(3, "b"))[4:]) == [4, 3, "b"]
    assert len(msgpack.unpackb(encode_message(RequestVote(3, "b"))[4:])) == 5


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ([3, 1, "a", 0, [1, 1, [["a", 1, None]]], 0], "a member must be"),
        ([3, 1, "a", 0, [1, 1, [["a", True, None], ["a", True, None]]], 0], "configuration"),
        ([3, 1, "a", 0, [1, 1], 0], "configuration must be"),
        ([3, 1, "a", 0, None, True], "must be int"),
        ([3, 1, "a", 0, [1, 1, [["", True, None]]], 0], "member"),
        ([1, 1, "a", False, False, 0, 0, ["a", 3]], "voters"),
        ([4, 1, "b", 1, "2"], "must be int"),
        ([4, 1, "b", 1], "needs 2 fields"),
    ],
)
def test_malformed_configuration_fields_are_refused(fields: list[Any], problem: str) -> None:
    with pytest.raises(WireError) as info:
        decode_message(msgpack.packb(fields))
    assert info.value.problem is FrameProblem.BAD_FIELD
    assert problem in str(info.value)

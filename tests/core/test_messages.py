"""Messages are immutable values, checked when they are built."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from almost_raft import (
    ControlAddNode,
    ControlLeaderChanged,
    ControlRemoveNode,
    HeartBeat,
    HeartBeatResponse,
    Message,
    Node,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
)
from almost_raft.core._messages import MAX_TERM


class StubNode(Node):
    def __init__(self, node_id: str) -> None:
        self._id = node_id

    async def send_message(self, msg: Message) -> None:
        raise AssertionError("not used")

    def node_id(self) -> str:
        return self._id


PEER_MESSAGES: list[PeerMessage] = [
    RequestVote(3, "a"),
    RequestVote(3, "a", pre_vote=True),
    RequestVoteResponse(3, "a", True),
    RequestVoteResponse(3, "a", False, pre_vote=True),
    HeartBeat(3, "a"),
    HeartBeatResponse(3, "a"),
]

BUILDERS: dict[str, Callable[..., PeerMessage]] = {
    "RequestVote": lambda term=1, node="a": RequestVote(term, node),
    "RequestVoteResponse": lambda term=1, node="a": RequestVoteResponse(term, node, True),
    "HeartBeat": lambda term=1, node="a": HeartBeat(term, node),
    "HeartBeatResponse": lambda term=1, node="a": HeartBeatResponse(term, node),
}

BAD_FIELDS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"term": True}, TypeError),
    ({"term": False}, TypeError),
    ({"term": 1.0}, TypeError),
    ({"term": "1"}, TypeError),
    ({"term": None}, TypeError),
    ({"term": -1}, ValueError),
    ({"term": MAX_TERM + 1}, ValueError),
    ({"node": ""}, ValueError),
    ({"node": "x" * 257}, ValueError),
    ({"node": 7}, TypeError),
    ({"node": None}, TypeError),
    ({"node": b"a"}, TypeError),
]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize(("fields", "error"), BAD_FIELDS, ids=[repr(f) for f, _ in BAD_FIELDS])
def test_peer_message_rejects_bad_fields(
    kind: str, fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        BUILDERS[kind](**fields)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_peer_message_accepts_the_extremes(kind: str) -> None:
    assert BUILDERS[kind](term=0, node="a").term == 0
    assert BUILDERS[kind](term=MAX_TERM, node="x" * 256).term == MAX_TERM


BAD_FLAGS: list[tuple[type[PeerMessage], dict[str, Any]]] = [
    (RequestVote, {"pre_vote": 1}),
    (RequestVote, {"pre_vote": None}),
    (RequestVoteResponse, {"granted": 1, "pre_vote": False}),
    (RequestVoteResponse, {"granted": "yes", "pre_vote": False}),
    (RequestVoteResponse, {"granted": True, "pre_vote": 0}),
]


@pytest.mark.parametrize(("cls", "flags"), BAD_FLAGS)
def test_flags_must_be_bools(cls: Callable[..., PeerMessage], flags: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        cls(1, "a", **flags)


@pytest.mark.parametrize("message", PEER_MESSAGES, ids=repr)
def test_every_peer_message_names_its_sender(message: PeerMessage) -> None:
    assert message.sender == "a"


@pytest.mark.parametrize("message", PEER_MESSAGES, ids=repr)
def test_messages_are_immutable(message: PeerMessage) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.term = 4  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        message.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(message, "__dict__")


def test_messages_are_values() -> None:
    assert RequestVote(1, "a") == RequestVote(1, "a")
    assert RequestVote(1, "a") != RequestVote(1, "a", pre_vote=True)
    beat: PeerMessage = HeartBeat(1, "a")
    assert beat != HeartBeatResponse(1, "a")
    assert len({HeartBeat(1, "a"), HeartBeat(1, "a"), HeartBeat(2, "a")}) == 2


def test_message_classes_are_attributes_of_message() -> None:
    # The Rust crate's Message::RequestVote {..} spelling.
    assert Message.RequestVote is RequestVote
    assert Message.RequestVoteResponse is RequestVoteResponse
    assert Message.HeartBeat is HeartBeat
    assert Message.HeartBeatResponse is HeartBeatResponse
    assert Message.ControlAddNode is ControlAddNode
    assert Message.ControlRemoveNode is ControlRemoveNode
    assert Message.ControlLeaderChanged is ControlLeaderChanged
    node = StubNode("n1")
    assert Message.ControlAddNode(node) == ControlAddNode(node)
    for cls in (RequestVote, RequestVoteResponse, HeartBeat, HeartBeatResponse):
        assert issubclass(cls, PeerMessage)
    for control in (ControlAddNode, ControlRemoveNode, ControlLeaderChanged):
        assert issubclass(control, Message)
        assert not issubclass(control, PeerMessage)


@pytest.mark.parametrize("cls", [ControlAddNode, ControlRemoveNode])
def test_membership_messages_need_a_node(cls: Callable[[Any], Message]) -> None:
    with pytest.raises(TypeError, match="needs a Node"):
        cls("n1")
    assert cls(StubNode("n1")).node.node_id() == "n1"  # type: ignore[attr-defined]


def test_leader_changed_carries_leader_and_term() -> None:
    assert ControlLeaderChanged("a", 3).leader_id == "a"
    assert ControlLeaderChanged(None).term == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ControlLeaderChanged("a", 3).term = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("leader_id", "term", "error"),
    [
        ("", 1, ValueError),
        (7, 1, TypeError),
        ("a", True, TypeError),
        ("a", -1, ValueError),
        ("a", "3", TypeError),
        (None, 1.5, TypeError),
    ],
)
def test_leader_changed_rejects_bad_fields(
    leader_id: Any, term: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ControlLeaderChanged(leader_id, term)

"""The TCP wire format: length-prefixed msgpack frames, a handshake, seven message kinds.

The handshake's frames are read and written by :mod:`._handshake_frames`; this module has
the rest, and the pieces both use (framing, unpacking, the errors).

This module does no I/O; it turns values into bytes and bytes back into values. The
transport reads frames off a socket and hands their bodies here.

Layout
------
Every frame is a 4-byte big-endian body length followed by a msgpack body. The first
frame on a connection is the handshake, then every frame is one peer message::

    handshake             ["almost-raft", version, cluster_id, node_id]
                          ["almost-raft", version, cluster_id, node_id, nonce]
    RequestVote           [1, term, candidate_id, pre_vote, transfer]
                          [1, term, candidate_id, pre_vote, transfer,
                              config_term, config_version, [voter_id, ...]]
    RequestVoteResponse   [2, term, voter_id, granted, pre_vote]
                          [2, term, voter_id, granted, pre_vote, promise_left]
    HeartBeat             [3, term, leader_id]
                          [3, term, leader_id, round_trip_us]
                          [3, term, leader_id, round_trip_us,
                              configuration or nil, committed_version]
                          [3, term, leader_id, round_trip_us,
                              configuration or nil, committed_version, round]
    HeartBeatResponse     [4, term, follower_id]
                          [4, term, follower_id, config_term, config_version]
                          [4, term, follower_id, config_term, config_version, round]
    TimeoutNow            [5, term, leader_id]
    RemovalNotice         [6, term, member_id, configuration]
    MembershipQuery       [7, term, node_id, config_term, config_version]

    configuration         [version, term, [[node_id, voter, address or nil], ...]]

The longer forms carry the configuration (see ``Configuration``); a message whose
configuration fields are all at their defaults is sent in the short form, as earlier
releases sent it, and both forms are read. The lease's fields (a heartbeat's ``round``
and its echo, a vote's ``promise_left``) come last, and only when they are not zero.

The first two handshake fields keep this layout in every protocol version, so a node can
always tell a peer that speaks another version from one that speaks garbage.

In a cluster with a shared secret (:mod:`._auth`) the handshake carries the dialler's
nonce, and two more frames follow it before any message: the acceptor answers
``[nonce, proof]`` (its own nonce, and its proof of the secret) and the dialler then
sends ``[proof]``. Nonces and proofs are 32-byte msgpack binaries. A node without the
secret refuses the five-field handshake and a node with it refuses the four-field one,
so the layout needs no new protocol version: neither side can misread the other.

Rules
-----
Rule 1 (size first). A frame longer than the limit is refused from its 4-byte header,
before its body is read, and msgpack's own limits stop a body from allocating more than
it is long: frames carry a few dozen bytes, so a large one is an attack or a bug.

Rule 2 (strict decoding). The decoder builds nothing but our seven message types. Every
field must have exactly its type (a bool is not an int here, though Python says it is),
the field count must be exact, and ids and terms go through the same checks as a
locally built message.

Rule 3 (one error type). Whatever the bytes, decoding either returns one of our values
or raises :class:`WireError`, whose ``problem`` says what was wrong; the transport counts
it, logs it and closes the connection.
"""

from __future__ import annotations

import enum
import struct
import sys
from typing import Any

from ...core._configuration import MAX_MEMBERS, Configuration, Member
from ...core._messages import (
    MAX_ID_LENGTH,
    HeartBeat,
    HeartBeatResponse,
    MembershipQuery,
    PeerMessage,
    RemovalNotice,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    check_node_id,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "HEADER_BYTES",
    "KIND_NAMES",
    "MESSAGE_KINDS",
    "MIN_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "FrameProblem",
    "WireError",
    "check_wire_id",
    "decode_message",
    "encode_message",
    "frame_length",
    "message_kind",
    "oversized",
    "require_msgpack",
]

PROTOCOL_VERSION = 1
MAGIC = "almost-raft"
HEADER_BYTES = 4
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
# The largest handshake (two ids of MAX_ID_LENGTH four-byte characters) must fit.
MIN_MAX_FRAME_BYTES = 4 * 1024

_HEADER = struct.Struct(">I")
# A str field holds at most MAX_ID_LENGTH characters of up to 4 UTF-8 bytes each.
_MAX_STR_BYTES = 4 * MAX_ID_LENGTH
# The longest array we send is a configuration's member list (MAX_MEMBERS), or a
# message of 8 fields; a little slack costs nothing.
_MAX_ARRAY_LEN = max(8, MAX_MEMBERS) + 4
# The kind number of a RemovalNotice, which has a reader of its own (see decode_message).
_REMOVAL_NOTICE = 6


class FrameProblem(enum.Enum):
    """Why a frame was refused. Each value names the transport's counter for it."""

    OVERSIZED = "bad_oversized"
    UNDECODABLE = "bad_undecodable"
    UNKNOWN_KIND = "bad_unknown_kind"
    BAD_FIELD = "bad_field"
    IMPERSONATION = "bad_impersonation"
    HANDSHAKE_REFUSED = "handshakes_refused"
    #: The peer did not prove it knows the cluster's shared secret.
    AUTH = "bad_auth"
    #: The TLS handshake failed: no certificate from the cluster's CA, or not TLS at all.
    TLS = "bad_tls"
    #: The peer's certificate does not name the node id it claims, or that we dialled.
    IDENTITY = "bad_identity"


class WireError(Exception):
    """A frame from a peer was refused. Never leaves the transport.

    Attributes:
        problem: the kind of refusal, for counting.
        detail: a human-readable reason, for the log line.
    """

    def __init__(self, problem: FrameProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.name.lower()}: {detail}")


def require_msgpack() -> Any:
    """Return the ``msgpack`` module.

    Raises:
        ImportError: msgpack is not installed; the message says how to install it.
    """
    try:
        import msgpack
    except ImportError as exc:
        raise ImportError(
            "the TCP transport needs msgpack, a dependency of almost-raft that is missing "
            "here: pip install msgpack",
            name="msgpack",
        ) from exc
    return msgpack


def check_wire_id(field: str, value: object) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``value`` is an id the wire can carry.

    On top of the message checks, the id must be encodable as UTF-8 (a lone surrogate is
    a valid ``str`` but not valid UTF-8).
    """
    check_node_id(field, value)
    assert isinstance(value, str)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field} must be valid Unicode text, got {value!r}") from exc


# ---------------------------------------------------------------------------- encoding


def message_kind(message: PeerMessage) -> str:
    """The metric name of ``message``'s kind, e.g. ``"heartbeat"``."""
    return KIND_NAMES[type(message)]


def encode_message(message: PeerMessage) -> bytes:
    """Return the complete frame (header included) that carries ``message``.

    Raises:
        TypeError: ``message`` is not one of the seven peer message types.
    """
    match message:
        case RequestVote():
            fields: list[object] = [
                1,
                message.term,
                message.candidate_id,
                message.pre_vote,
                message.transfer,
            ]
            if message.config_term or message.config_version or message.voters:
                fields += [message.config_term, message.config_version, list(message.voters)]
        case RequestVoteResponse():
            fields = [2, message.term, message.voter_id, message.granted, message.pre_vote]
            if message.promise_left:
                fields.append(message.promise_left)
        case HeartBeat():
            fields = [3, message.term, message.leader_id]
            config = message.configuration
            if config is not None or message.committed_version or message.round:
                fields += [
                    message.round_trip_us,
                    None if config is None else _encode_configuration(config),
                    message.committed_version,
                ]
                if message.round:
                    fields.append(message.round)
            elif message.round_trip_us:
                # Left out while unknown, so such a heartbeat reads as before.
                fields.append(message.round_trip_us)
        case HeartBeatResponse():
            fields = [4, message.term, message.follower_id]
            if message.config_term or message.config_version or message.round:
                fields += [message.config_term, message.config_version]
                if message.round:
                    fields.append(message.round)
        case TimeoutNow():
            fields = [5, message.term, message.leader_id]
        case RemovalNotice():
            fields = [
                _REMOVAL_NOTICE,
                message.term,
                message.member_id,
                _encode_configuration(message.configuration),
            ]
        case MembershipQuery():
            fields = [7, message.term, message.node_id, message.config_term, message.config_version]
        case _:
            raise TypeError(f"cannot encode {type(message).__name__}")
    return _frame(fields)


def _encode_configuration(config: Configuration) -> list[object]:
    members = [[m.node_id, m.voter, m.address] for m in config.members]
    return [config.version, config.term, members]


# The msgpack module this encoder last found, and a packer of its own: packb() would
# build a packer for every message. Looked up again whenever the module changes, so a
# missing msgpack is always reported.
_packing: tuple[Any, Any] = (None, None)


def _frame(fields: list[object]) -> bytes:
    global _packing
    module, packer = _packing
    if module is None or sys.modules.get("msgpack") is not module:
        module = require_msgpack()
        packer = module.Packer(use_bin_type=True)
        _packing = (module, packer)
    body: bytes = packer.pack(fields)
    return _HEADER.pack(len(body)) + body


# ---------------------------------------------------------------------------- decoding


def frame_length(
    data: bytes | bytearray | memoryview, max_frame_bytes: int, offset: int = 0
) -> int:
    """Return the body length announced by the 4-byte frame header at ``data[offset:]``.

    This is the one reader of frame headers: the framed connection cuts frames with it,
    and so does anything else that reads the stream (the chaos proxies).

    Raises:
        WireError: the body would be longer than ``max_frame_bytes`` (``OVERSIZED``, or
            ``TLS`` when the bytes are a TLS record: see :func:`oversized`).
    """
    (length,) = _HEADER.unpack_from(data, offset)
    if length > max_frame_bytes:
        raise oversized(bytes(data[offset : offset + HEADER_BYTES]), max_frame_bytes)
    return int(length)


# A TLS record starts with its type (22: handshake) and version (3, 1 to 4): as a frame
# header that is a length near 370 MB, so it always fails the size check first.
_TLS_HANDSHAKE_RECORD = (0x16, 0x03)


def oversized(header: bytes, max_frame_bytes: int) -> WireError:
    """The refusal of a frame whose 4-byte ``header`` announces more than the limit.

    What usually sends such a header is not a broken peer but another protocol on this
    port, so a TLS record and an HTTP request are named, with what this node must change.
    """
    length = int.from_bytes(header[:HEADER_BYTES], "big")
    if tuple(header[:2]) == _TLS_HANDSHAKE_RECORD and 1 <= header[2] <= 4:
        return WireError(
            FrameProblem.TLS,
            "a TLS handshake arrived on this node's plain TCP port: the peer uses mutual "
            "TLS and this node does not. If the cluster uses TLS, add its [tls] section "
            "(ca, and this node's cert and key) to this node's cluster file",
        )
    if header[:4] in (b"GET ", b"HEAD", b"POST", b"PUT "):
        return WireError(
            FrameProblem.OVERSIZED,
            "an HTTP request arrived on the node's peer port: /status and /metrics are "
            "served on the node's http address, not on its address",
        )
    return WireError(FrameProblem.OVERSIZED, f"frame of {length} bytes, limit {max_frame_bytes}")


def decode_message(body: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> PeerMessage:
    """Decode the body of one message frame.

    Returns:
        A new ``RequestVote``, ``RequestVoteResponse``, ``HeartBeat``,
        ``HeartBeatResponse``, ``TimeoutNow``, ``RemovalNotice`` or
        ``MembershipQuery``, and nothing else.

    Raises:
        WireError: the body is not exactly one valid message.
    """
    fields = _unpack(body, max_frame_bytes)
    if not isinstance(fields, list) or not fields:
        raise WireError(FrameProblem.BAD_FIELD, "a message must be a non-empty array")
    # Unpacked into a display, not tuple(map(...)): a tuple grown from an iterator of
    # unknown length is resized, not taken from the interpreter's free list, yet freed
    # onto it, so that list filled up (2,000 tuples of each length, 0.19 MiB a node).
    steady = _STEADY.get((*map(type, fields),))
    if steady is not None and fields[0] == steady[0]:
        # A heartbeat or its answer in the form a leader sends every round: what the
        # schema below would check, in one comparison.
        cls = steady[1]
        try:
            return cls(*fields[1:])
        except (TypeError, ValueError) as exc:
            raise WireError(FrameProblem.BAD_FIELD, f"{cls.__name__}: {exc}") from None
    kind = fields[0]
    if type(kind) is int and kind == _REMOVAL_NOTICE:
        return _decode_removal_notice(fields[1:])
    schema = _SCHEMAS.get(kind) if type(kind) is int else None
    if schema is None:
        raise WireError(FrameProblem.UNKNOWN_KIND, f"kind {kind!r}")
    cls, types, optional = schema
    values = fields[1:]
    extension: dict[str, Any] = {}
    extended = _EXTENSIONS.get(kind)
    full = len(types) + len(optional)
    if extended is not None and extended[0] <= len(values) - full <= extended[0] + extended[2]:
        count = extended[0]
        extension = extended[1](cls.__name__, values[full : full + count])
        for name, value in zip(("round",), values[full + count :], strict=False):
            # The lease's round, after the configuration's fields.
            _exact_ints(cls.__name__, [value])
            extension[name] = value
        values = values[:full]
    if not len(types) <= len(values) <= full:
        raise WireError(
            FrameProblem.BAD_FIELD,
            f"{cls.__name__} needs {len(types)} fields"
            + (f" and up to {len(optional)} more" if optional else "")
            + f", got {len(values)}",
        )
    types += optional[: len(values) - len(types)]
    # Exact types rather than isinstance: True must not pass for an int. One comparison of
    # type tuples checks them all; the loop only finds which field to name.
    if (*map(type, values),) != types:
        for index, (value, expected) in enumerate(zip(values, types, strict=True)):
            if type(value) is not expected:
                raise WireError(
                    FrameProblem.BAD_FIELD,
                    f"{cls.__name__} field {index} must be {expected.__name__}, "
                    f"got {type(value).__name__}",
                )
    try:
        return cls(*values, **extension)
    except (TypeError, ValueError) as exc:
        raise WireError(FrameProblem.BAD_FIELD, f"{cls.__name__}: {exc}") from None


def _bad(name: str, what: str) -> WireError:
    return WireError(FrameProblem.BAD_FIELD, f"{name} {what}")


def _exact_ints(name: str, values: list[Any]) -> None:
    for value in values:
        if type(value) is not int:
            raise _bad(name, f"configuration field must be int, got {type(value).__name__}")


def _vote_extension(name: str, values: list[Any]) -> dict[str, Any]:
    config_term, config_version, voters = values
    _exact_ints(name, [config_term, config_version])
    if type(voters) is not list or any(type(voter) is not str for voter in voters):
        raise _bad(name, "voters must be an array of str")
    return {"config_term": config_term, "config_version": config_version, "voters": tuple(voters)}


def _heartbeat_extension(name: str, values: list[Any]) -> dict[str, Any]:
    raw, committed = values
    _exact_ints(name, [committed])
    return {
        "configuration": None if raw is None else _decode_configuration(name, raw),
        "committed_version": committed,
    }


def _response_extension(name: str, values: list[Any]) -> dict[str, Any]:
    _exact_ints(name, values)
    return {"config_term": values[0], "config_version": values[1]}


def _decode_removal_notice(values: list[Any]) -> RemovalNotice:
    # Its configuration is not optional, so it has a reader of its own rather than a
    # schema with an extension.
    name = RemovalNotice.__name__
    if len(values) != 3:
        raise _bad(name, f"needs 3 fields, got {len(values)}")
    term, member_id, raw = values
    if type(term) is not int:
        raise _bad(name, f"field 0 must be int, got {type(term).__name__}")
    if type(member_id) is not str:
        raise _bad(name, f"field 1 must be str, got {type(member_id).__name__}")
    configuration = _decode_configuration(name, raw)
    try:
        return RemovalNotice(term, member_id, configuration)
    except (TypeError, ValueError) as exc:
        raise _bad(name, str(exc)) from None


def _decode_configuration(name: str, raw: object) -> Configuration:
    if type(raw) is not list or len(raw) != 3:
        raise _bad(name, "configuration must be [version, term, members]")
    version, term, members = raw
    _exact_ints(name, [version, term])
    if type(members) is not list:
        raise _bad(name, "configuration members must be an array")
    decoded = []
    for entry in members:
        if (
            type(entry) is not list
            or len(entry) != 3
            or type(entry[0]) is not str
            or type(entry[1]) is not bool
            or not (entry[2] is None or type(entry[2]) is str)
        ):
            raise _bad(name, "a member must be [str, bool, str or nil]")
        try:
            decoded.append(Member(entry[0], entry[1], entry[2]))
        except ValueError as exc:
            raise _bad(name, f"member: {exc}") from None
    try:
        return Configuration(version, term, tuple(decoded))
    except (TypeError, ValueError) as exc:
        raise _bad(name, f"configuration: {exc}") from None


def _unpack(body: bytes, max_frame_bytes: int, *, max_bin_len: int = 0) -> object:
    if len(body) > max_frame_bytes:
        raise WireError(
            FrameProblem.OVERSIZED, f"frame of {len(body)} bytes, limit {max_frame_bytes}"
        )
    msgpack = _packing[0]
    if msgpack is None or sys.modules.get("msgpack") is not msgpack:
        msgpack = require_msgpack()
    # Each limit caps what one header inside the body may make msgpack allocate; maps and
    # extension types never occur in our frames, and binaries only where the caller allows
    # them (handshake nonces and proofs), so they are refused otherwise. The body is already
    # within the frame limit, so one call over the whole of it is safe.
    try:
        value: object = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=_MAX_STR_BYTES,
            max_bin_len=max_bin_len,
            max_array_len=_MAX_ARRAY_LEN,
            max_map_len=0,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise WireError(
            FrameProblem.UNDECODABLE, f"{len(exc.extra)} bytes after the message"
        ) from None
    except Exception as exc:
        # msgpack signals bad input with a dozen exception types (ValueError, its own
        # UnpackException family, UnicodeDecodeError, RecursionError on deep nesting);
        # all mean the same thing here.
        raise WireError(FrameProblem.UNDECODABLE, f"{type(exc).__name__}: {exc}") from None
    return value


# Per kind: the class, the types of its fields, and those of trailing fields that a
# sender may leave out (added later, so that an older sender's frames still decode).
_SCHEMAS: dict[int, tuple[type[PeerMessage], tuple[type, ...], tuple[type, ...]]] = {
    1: (RequestVote, (int, str, bool, bool), ()),
    2: (RequestVoteResponse, (int, str, bool, bool), (float,)),
    3: (HeartBeat, (int, str), (int,)),
    4: (HeartBeatResponse, (int, str), ()),
    5: (TimeoutNow, (int, str), ()),
    7: (MembershipQuery, (int, str, int, int), ()),
}

# The full forms of a heartbeat without a configuration and of its answer, field by
# field: what a cluster with no change under way sends all the time.
# A frame of either shape but of another kind goes through the schema.
_STEADY: dict[tuple[type, ...], tuple[int, type[PeerMessage]]] = {
    (int, int, str, int, type(None), int, int): (3, HeartBeat),
    (int, int, str, int, int, int): (4, HeartBeatResponse),
}

# The longer forms that carry the configuration: how many more fields, their reader, and
# how many of the lease's fields (the round) may follow them.
_EXTENSIONS: dict[int, tuple[int, Any, int]] = {
    1: (3, _vote_extension, 0),
    3: (2, _heartbeat_extension, 1),
    4: (2, _response_extension, 1),
}

#: The metric name of each message type (what :func:`message_kind` returns), for the
#: code that counts every message and would rather not make a call of it.
KIND_NAMES: dict[type[PeerMessage], str] = {
    RequestVote: "request_vote",
    RequestVoteResponse: "request_vote_response",
    HeartBeat: "heartbeat",
    HeartBeatResponse: "heartbeat_response",
    TimeoutNow: "timeout_now",
    RemovalNotice: "removal_notice",
    MembershipQuery: "membership_query",
}

MESSAGE_KINDS: tuple[str, ...] = tuple(KIND_NAMES.values())

"""The frames that open a connection: the handshake, and the shared secret's challenge
and proof (their layout is in :mod:`._wire`).

Like :mod:`._wire`, this does no I/O, and whatever the bytes it returns one of our values
or raises :class:`~._wire.WireError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container

from ...core._messages import check_node_id
from ._wire import (
    DEFAULT_MAX_FRAME_BYTES,
    MAGIC,
    PROTOCOL_VERSION,
    FrameProblem,
    WireError,
    _frame,
    _unpack,
)

__all__ = [
    "NONCE_BYTES",
    "Handshake",
    "check_handshake",
    "decode_challenge",
    "decode_handshake",
    "decode_proof",
    "encode_challenge",
    "encode_handshake",
    "encode_proof",
]

#: The length of every nonce and proof of the shared-secret handshake (HMAC-SHA256).
NONCE_BYTES = 32


@dataclasses.dataclass(frozen=True, slots=True)
class Handshake:
    """The first frame of every connection: who is calling, in which cluster, how.

    ``nonce`` is the dialler's fresh random challenge when it proves a shared secret, and
    None when the cluster has none.
    """

    version: int
    cluster_id: str
    node_id: str
    nonce: bytes | None = None


def encode_handshake(handshake: Handshake) -> bytes:
    """Return the complete frame (header included) that opens a connection."""
    fields: list[object] = [MAGIC, handshake.version, handshake.cluster_id, handshake.node_id]
    if handshake.nonce is not None:
        fields.append(handshake.nonce)
    return _frame(fields)


def encode_challenge(nonce: bytes, proof: bytes) -> bytes:
    """Return the acceptor's answer to a handshake with a nonce: its nonce and its proof."""
    return _frame([nonce, proof])


def encode_proof(proof: bytes) -> bytes:
    """Return the dialler's last handshake frame: its proof of the shared secret."""
    return _frame([proof])


def decode_handshake(body: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Handshake:
    """Decode the body of a connection's first frame.

    Raises:
        WireError: the body is not a handshake of our protocol version.
    """
    fields = _unpack(body, max_frame_bytes, max_bin_len=NONCE_BYTES)
    if not isinstance(fields, list) or len(fields) < 2 or fields[0] != MAGIC:
        raise WireError(FrameProblem.HANDSHAKE_REFUSED, "not an almost-raft handshake")
    version = fields[1]
    if type(version) is not int:
        raise WireError(FrameProblem.HANDSHAKE_REFUSED, "protocol version is not an integer")
    if version != PROTOCOL_VERSION:
        raise WireError(
            FrameProblem.HANDSHAKE_REFUSED,
            f"protocol version {version}, this node speaks {PROTOCOL_VERSION}",
        )
    if len(fields) not in (4, 5) or type(fields[2]) is not str or type(fields[3]) is not str:
        raise WireError(FrameProblem.HANDSHAKE_REFUSED, "malformed handshake")
    cluster_id, node_id = fields[2], fields[3]
    nonce = fields[4] if len(fields) == 5 else None
    if nonce is not None and (type(nonce) is not bytes or len(nonce) != NONCE_BYTES):
        raise WireError(
            FrameProblem.HANDSHAKE_REFUSED, f"the nonce must be {NONCE_BYTES} bytes of binary"
        )
    try:
        check_node_id("cluster_id", cluster_id)
        check_node_id("node_id", node_id)
    except (TypeError, ValueError) as exc:
        raise WireError(FrameProblem.HANDSHAKE_REFUSED, str(exc)) from None
    return Handshake(version, cluster_id, node_id, nonce)


def decode_challenge(body: bytes) -> tuple[bytes, bytes]:
    """Decode the acceptor's answer to a handshake: ``(its nonce, its proof)``.

    Raises:
        WireError: ``AUTH``: the body is not exactly two 32-byte binaries.
    """
    nonce, proof = _binaries(body, 2, "challenge")
    return nonce, proof


def decode_proof(body: bytes) -> bytes:
    """Decode the dialler's proof of the shared secret.

    Raises:
        WireError: ``AUTH``: the body is not exactly one 32-byte binary.
    """
    (proof,) = _binaries(body, 1, "proof")
    return proof


def _binaries(body: bytes, count: int, what: str) -> list[bytes]:
    # Both frames are a few dozen bytes; anything longer is refused before decoding.
    limit = 16 + count * (NONCE_BYTES + 2)
    try:
        fields = _unpack(body, limit, max_bin_len=NONCE_BYTES)
    except WireError as exc:
        raise WireError(FrameProblem.AUTH, f"{what}: {exc.detail}") from None
    wrong = WireError(
        FrameProblem.AUTH, f"a {what} must be {count} binaries of {NONCE_BYTES} bytes"
    )
    if not isinstance(fields, list) or len(fields) != count:
        raise wrong
    binaries: list[bytes] = []
    for field in fields:
        if type(field) is not bytes or len(field) != NONCE_BYTES:
            raise wrong
        binaries.append(field)
    return binaries


def check_handshake(
    handshake: Handshake, *, cluster_id: str, our_id: str, peers: Container[str]
) -> None:
    """Raise unless a connection that opened with ``handshake`` may talk to this node.

    Raises:
        WireError: ``HANDSHAKE_REFUSED``, naming which of cluster or node id was wrong.
    """
    if handshake.cluster_id != cluster_id:
        raise WireError(
            FrameProblem.HANDSHAKE_REFUSED,
            f"cluster {handshake.cluster_id!r}, this node is in {cluster_id!r}",
        )
    if handshake.node_id == our_id:
        raise WireError(FrameProblem.HANDSHAKE_REFUSED, f"peer claims this node's id {our_id!r}")
    if handshake.node_id not in peers:
        raise WireError(
            FrameProblem.HANDSHAKE_REFUSED, f"node {handshake.node_id!r} is not a known peer"
        )

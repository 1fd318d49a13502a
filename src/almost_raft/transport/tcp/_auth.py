"""The shared-secret handshake: each end proves it knows the cluster's secret.

For clusters without a PKI. The secret never crosses the network; each end sends an
HMAC-SHA256 over a transcript of the connection that includes the other end's fresh
random nonce::

    dialler  -> acceptor   handshake with nonce_d          (see :mod:`._wire`)
    acceptor -> dialler    [nonce_a, proof(acceptor)]
    dialler  -> acceptor   [proof(dialler)]
    dialler  -> acceptor   messages...

    proof(role) = HMAC-SHA256(secret, role, protocol version, cluster id,
                              dialler id, acceptor id, nonce_d, nonce_a)

Rules
-----
Rule 1 (no replay). Each proof covers the other end's nonce, fresh for this
connection, so a recorded handshake proves nothing on a new connection.

Rule 2 (no reflection). The role is part of what is signed, so an acceptor's proof can
never pass as a dialler's; the two node ids are too, so a proof for one pair of nodes
never passes for another.

Rule 3 (verify before anything else). The acceptor reads no message until the dialler's
proof checked out, and the dialler sends its proof only after the acceptor's checked
out: a listener that does not know the secret learns nothing it could use.

What it does not do: encrypt, or protect the messages after the handshake from someone
who can rewrite traffic on the path. That is what mutual TLS is for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from ...core._errors import ConfigError
from ._handshake_frames import (
    NONCE_BYTES,
    Handshake,
    decode_challenge,
    decode_proof,
    encode_challenge,
    encode_proof,
)
from ._wire import PROTOCOL_VERSION, FrameProblem, WireError

__all__ = [
    "MIN_SECRET_BYTES",
    "accept_proof",
    "check_challenge",
    "check_dialler_proof",
    "check_secret",
    "FrameWriter",
    "Transcript",
    "new_nonce",
    "prove",
    "read_secret_file",
]

#: A shorter secret could be guessed; 16 random bytes (32 hex digits) are plenty.
MIN_SECRET_BYTES = 16

_LABEL = b"almost-raft shared-secret handshake"

Role = Literal["dialler", "acceptor"]
ReadFrame = Callable[[], Awaitable[bytes]]


class FrameWriter(Protocol):
    """Where the handshake writes its frames: the connection being set up."""

    def write(self, data: bytes) -> None:
        """Send ``data``, a whole frame."""

    async def drain(self) -> None:
        """Wait until the connection takes more data.

        Raises:
            OSError: the connection failed.
        """


def check_secret(field: str, value: object) -> bytes:
    """Return ``value`` if it can be a cluster secret.

    Raises:
        ConfigError: not bytes, or shorter than :data:`MIN_SECRET_BYTES`.
    """
    if not isinstance(value, bytes) or len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            field,
            "<hidden>" if isinstance(value, bytes) else value,
            f"must be at least {MIN_SECRET_BYTES} bytes; make one with: "
            "openssl rand -hex 32 > cluster.secret",
        )
    return value


def read_secret_file(field: str, path: str | os.PathLike[str]) -> bytes:
    """Read a cluster secret from ``path``, ignoring whitespace around it.

    Raises:
        ConfigError: the file is missing, unreadable or too short; names ``field``.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ConfigError(field, path, "no such file") from None
    except OSError as exc:
        raise ConfigError(field, path, f"cannot be read: {exc.strerror}") from None
    try:
        return check_secret(field, data.strip())
    except ConfigError as exc:
        raise ConfigError(field, path, exc.fix) from None


def new_nonce() -> bytes:
    """A fresh random nonce from the operating system's CSPRNG."""
    return secrets.token_bytes(NONCE_BYTES)


@dataclasses.dataclass(frozen=True, slots=True)
class Transcript:
    """What both proofs of one connection sign (see the module docstring)."""

    cluster_id: str
    dialler_id: str
    acceptor_id: str
    dialler_nonce: bytes
    acceptor_nonce: bytes
    version: int = PROTOCOL_VERSION

    def proof(self, secret: bytes, role: Role) -> bytes:
        """HMAC-SHA256 of this transcript, as ``role`` sends it."""
        parts = (
            _LABEL,
            role.encode(),
            str(self.version).encode(),
            self.cluster_id.encode(),
            self.dialler_id.encode(),
            self.acceptor_id.encode(),
            self.dialler_nonce,
            self.acceptor_nonce,
        )
        # Each part is length-prefixed, so no two different transcripts make the same bytes.
        signed = b"".join(struct.pack(">I", len(part)) + part for part in parts)
        return hmac.new(secret, signed, hashlib.sha256).digest()


async def accept_proof(
    secret: bytes,
    handshake: Handshake,
    our_id: str,
    read_frame: ReadFrame,
    writer: FrameWriter,
) -> None:
    """The acceptor's half: challenge the dialler of ``handshake`` and check its proof.

    Returns only if the dialler proved the secret; the caller then reads messages.

    Raises:
        WireError: ``AUTH``: the handshake carries no nonce, or the proof is wrong.
        OSError: the connection failed.
    """
    if handshake.nonce is None:
        raise WireError(
            FrameProblem.AUTH,
            "the peer offers no proof of the cluster's shared secret: it has no "
            "secret_file, and must be given the cluster's",
        )
    our_nonce = new_nonce()
    transcript = Transcript(
        handshake.cluster_id,
        handshake.node_id,
        our_id,
        handshake.nonce,
        our_nonce,
        handshake.version,
    )
    writer.write(encode_challenge(our_nonce, transcript.proof(secret, "acceptor")))
    await writer.drain()
    check_dialler_proof(secret, transcript, await read_frame())


async def prove(
    secret: bytes,
    handshake: Handshake,
    acceptor_id: str,
    read_frame: ReadFrame,
    writer: FrameWriter,
) -> None:
    """The dialler's half, after sending ``handshake``: check the acceptor, then prove.

    Raises:
        WireError: ``AUTH``: the acceptor's answer is malformed or its proof is wrong
            (it does not know the secret, or it is not ``acceptor_id``).
        OSError: the connection failed, typically because the acceptor refused our
            handshake.
    """
    transcript = check_challenge(secret, handshake, acceptor_id, await read_frame())
    writer.write(encode_proof(transcript.proof(secret, "dialler")))


def check_dialler_proof(secret: bytes, transcript: Transcript, body: bytes) -> None:
    """The acceptor's check of the dialler's proof frame ``body``.

    Raises:
        WireError: ``AUTH``: ``body`` is not a proof made with ``secret`` over
            ``transcript``.
    """
    theirs = decode_proof(body)
    if not hmac.compare_digest(theirs, transcript.proof(secret, "dialler")):
        raise WireError(FrameProblem.AUTH, "wrong proof of the cluster's shared secret")


def check_challenge(
    secret: bytes, handshake: Handshake, acceptor_id: str, body: bytes
) -> Transcript:
    """The dialler's check of the acceptor's challenge frame ``body``.

    Args:
        secret: the cluster's secret.
        handshake: the handshake the dialler sent, with its nonce.
        acceptor_id: the node the dialler meant to reach.
        body: the acceptor's answer.

    Returns:
        The connection's transcript, for the dialler's own proof.

    Raises:
        WireError: ``AUTH``: ``body`` is malformed, or its proof was not made with
            ``secret`` by ``acceptor_id`` for this handshake.
    """
    assert handshake.nonce is not None
    their_nonce, theirs = decode_challenge(body)
    transcript = Transcript(
        handshake.cluster_id,
        handshake.node_id,
        acceptor_id,
        handshake.nonce,
        their_nonce,
        handshake.version,
    )
    if not hmac.compare_digest(theirs, transcript.proof(secret, "acceptor")):
        # Either side may hold the wrong secret; a node that logs this for every peer
        # is the one to fix.
        raise WireError(
            FrameProblem.AUTH,
            f"the peer did not prove the shared secret as {acceptor_id!r}: its secret differs "
            "from this node's secret_file. If this node says so of every peer, its "
            "secret_file is the wrong one: give it the cluster's secret",
        )
    return transcript

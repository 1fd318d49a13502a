"""Mutual TLS for the TCP transport: both ends show a certificate from the cluster's CA.

Rules
-----
Rule 1 (one CA). Both contexts trust only the cluster's CA, never the system's: a
certificate from a public CA proves nothing about membership of this cluster.

Rule 2 (both ends are checked). The acceptor requires the dialler's certificate; the
dialler requires the acceptor's. A peer without a certificate signed by the CA does not
get past the TLS handshake.

Rule 3 (the certificate names the node). A certificate names the node ids in its subject
alternative names (DNS or URI entries) and in its subject's common name. The acceptor
refuses a handshake that claims a node id its certificate does not name, and the dialler
drops a connection whose certificate does not name the node it meant to reach. Host
names are not checked: nodes are identified by id, not by where they happen to run.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from typing import Any

from ...core._errors import ConfigError
from ._wire import FrameProblem, WireError

__all__ = ["TlsConfig", "certificate_names"]


@dataclasses.dataclass(frozen=True, slots=True)
class TlsConfig:
    """The TLS contexts a :class:`TcpTransport` uses: one to accept, one to dial.

    Build one from files with :meth:`from_files`, or pass contexts you made yourself.

    Args:
        server: the context for inbound connections. It must require a client
            certificate (``verify_mode`` is ``CERT_REQUIRED``).
        client: the context for outbound connections. It must verify the peer's
            certificate (``CERT_REQUIRED``) and must not check host names
            (``check_hostname`` is False): the transport checks the node id instead.

    Raises:
        ConfigError: a context would let an unverified peer in.
    """

    server: ssl.SSLContext
    client: ssl.SSLContext

    def __post_init__(self) -> None:
        for field, context, purpose in (
            ("server", self.server, ssl.PROTOCOL_TLS_SERVER),
            ("client", self.client, ssl.PROTOCOL_TLS_CLIENT),
        ):
            if not isinstance(context, ssl.SSLContext) or context.protocol != purpose:
                raise ConfigError(field, context, f"must be an ssl.SSLContext({purpose.name})")
            if context.verify_mode != ssl.CERT_REQUIRED:
                raise ConfigError(
                    field, context, "must set verify_mode = ssl.CERT_REQUIRED: mutual TLS"
                )
        if self.client.check_hostname:
            raise ConfigError(
                "client",
                self.client,
                "must set check_hostname = False: peers are checked by node id, not host name",
            )

    @classmethod
    def from_files(
        cls,
        *,
        ca: str | os.PathLike[str],
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
    ) -> TlsConfig:
        """Build both contexts from PEM files: the CA, this node's certificate and key.

        Both contexts require TLS 1.2 or later and trust nothing but ``ca``.

        Raises:
            ConfigError: a file is missing or unreadable, is not PEM of the right kind,
                or the key does not belong to the certificate. The field is ``ca``,
                ``cert`` or ``key``.
        """
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        for context in (server, client):
            context.verify_mode = ssl.CERT_REQUIRED
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            _load_ca(context, os.fspath(ca))
            _load_chain(context, os.fspath(cert), os.fspath(key))
        return cls(server, client)


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    _check_file("ca", ca)
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError("ca", ca, f"is not a PEM CA certificate: {exc}") from None


def _load_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    # OpenSSL's errors here say "PEM lib" whichever file is wrong; a look at the PEM
    # markers first lets the error name the file.
    if b"-----BEGIN CERTIFICATE-----" not in _check_file("cert", cert):
        raise ConfigError("cert", cert, "is not a PEM certificate")
    if b"PRIVATE KEY-----" not in _check_file("key", key):
        raise ConfigError("key", key, "is not a PEM private key")
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                "key", key, f"is not the private key of the certificate {cert}"
            ) from None
        raise ConfigError(
            "key", key, f"cannot be used with the certificate {cert}: {exc}"
        ) from None


def _check_file(field: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise ConfigError(field, path, "no such file") from None
    except OSError as exc:
        raise ConfigError(field, path, f"cannot be read: {exc.strerror}") from None


def certificate_names(peercert: Mapping[str, Any] | None) -> frozenset[str]:
    """The node ids a verified certificate names (see Rule 3).

    Args:
        peercert: what ``SSLSocket.getpeercert()`` returns for a verified peer.

    Returns:
        Every DNS and URI subject alternative name and every common name; empty for
        None or a certificate that names nothing.
    """
    if not peercert:
        return frozenset()
    names: set[str] = set()
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("DNS", "URI") and isinstance(value, str):
            names.add(value)
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName" and isinstance(value, str):
                names.add(value)
    return frozenset(names)


def require_certificate_name(peercert: Mapping[str, Any] | None, node_id: str, role: str) -> None:
    """Refuse a connection whose verified certificate does not name ``node_id``.

    Args:
        peercert: what the connection's ``getpeercert()`` returns.
        node_id: the id the peer claims, or the one we dialled.
        role: how the message names that id: ``"claims"`` or ``"dialled"``.

    Raises:
        WireError: ``IDENTITY``, naming the id and what the certificate names.
    """
    names = certificate_names(peercert)
    if node_id not in names:
        raise WireError(
            FrameProblem.IDENTITY, f"{role} {node_id!r}, its certificate names {sorted(names)}"
        )

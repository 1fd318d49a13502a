"""``almost-raft certs``: a cluster CA and one certificate per node, for mutual TLS.

Needs the optional dependency cryptography (``pip install 'almost-raft[tls]'``), which is
imported only when certificates are made. Keys are ECDSA P-256. Each node's certificate
names its node id as a DNS subject alternative name and, when it fits (64 characters),
as the common name; it may serve and dial (both extended key usages).

Files written to the output directory, all PEM::

    ca.pem, ca.key          the cluster's CA (reused when they already exist)
    <node>.pem, <node>.key  each node's certificate and key

Keys are written readable by their owner only. Keep ``ca.key`` off the nodes: whoever has
it can make a certificate for any node id.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any

from ..core._errors import ConfigError
from ..core._messages import MAX_ID_LENGTH

__all__ = ["CertificateFiles", "make_certificates"]

_CA_CERT = "ca.pem"
_CA_KEY = "ca.key"
# RFC 5280 caps a common name at 64 characters.
_MAX_COMMON_NAME = 64


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where :func:`make_certificates` put the files."""

    ca: Path
    ca_key: Path
    nodes: dict[str, tuple[Path, Path]]
    """(certificate, key) by node id."""


def _require_cryptography() -> Any:
    try:
        from cryptography import x509
    except ImportError as exc:
        raise ImportError(
            "making certificates needs cryptography; install it with: "
            "pip install 'almost-raft[tls]'",
            name="cryptography",
        ) from exc
    return x509


def make_certificates(
    directory: str | os.PathLike[str], cluster_id: str, node_ids: list[str], *, days: int = 825
) -> CertificateFiles:
    """Write a CA (unless one is there) and a certificate and key for each node.

    Args:
        directory: where the files go; made if missing.
        cluster_id: names the CA, so certificates of two clusters are told apart.
        node_ids: the nodes to certify; an existing certificate of a node is replaced.
        days: how long the certificates are valid.

    Raises:
        ConfigError: a node id cannot be a DNS name (ASCII letters, digits, ``-``,
            ``_`` and ``.``), ``days`` is not positive, or only one of ``ca.pem`` and
            ``ca.key`` exists.
        ImportError: cryptography is not installed.
    """
    x509 = _require_cryptography()
    if type(days) is not int or days < 1:
        raise ConfigError("days", days, "must be a whole number of days of at least 1")
    for node_id in node_ids:
        _check_dns_id(node_id)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = directory / _CA_CERT, directory / _CA_KEY
    if ca_path.exists() != ca_key_path.exists():
        raise ConfigError(
            "--dir",
            str(directory),
            f"has only one of {_CA_CERT} and {_CA_KEY}; restore the other or remove both",
        )
    if ca_path.exists():
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_cert, ca_key = _make_ca(cluster_id, days)
        _write(ca_path, _pem_cert(ca_cert), private=False)
        _write(ca_key_path, _pem_key(ca_key), private=True)
    nodes: dict[str, tuple[Path, Path]] = {}
    for node_id in node_ids:
        cert, key = _make_node(node_id, ca_cert, ca_key, days)
        cert_path, key_path = directory / f"{node_id}.pem", directory / f"{node_id}.key"
        _write(cert_path, _pem_cert(cert), private=False)
        _write(key_path, _pem_key(key), private=True)
        nodes[node_id] = (cert_path, key_path)
    return CertificateFiles(ca_path, ca_key_path, nodes)


def _check_dns_id(node_id: object) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    if (
        not isinstance(node_id, str)
        or not 0 < len(node_id) <= MAX_ID_LENGTH
        or not set(node_id) <= allowed
        or node_id.startswith(".")
    ):
        raise ConfigError(
            "node id",
            node_id,
            "must be ASCII letters, digits, '-', '_' and '.' to be named in a certificate; "
            "for other ids make certificates with openssl (see the README)",
        )


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(cluster_id: str, days: int) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"almost-raft CA {cluster_id}"[:_MAX_COMMON_NAME])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_node(node_id: str, ca_cert: Any, ca_key: Any, days: int) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    # Every certificate needs a subject; a node id too long for a common name is named
    # by its DNS entry alone.
    subject = _name(node_id if len(node_id) <= _MAX_COMMON_NAME else "almost-raft node")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_id)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _pem_cert(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    data: bytes = cert.public_bytes(Encoding.PEM)
    return data


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    data: bytes = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return data


def _write(path: Path, data: bytes, *, private: bool) -> None:
    # A key is created with owner-only permissions, never widened after the fact.
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)

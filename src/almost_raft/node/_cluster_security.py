"""The security fields of the cluster file: mutual TLS and a shared secret.

Example::

    secret_file = "cluster.secret"    # every node proves it knows this file's contents

    [tls]                             # mutual TLS between the nodes
    ca = "tls/ca.pem"                 # the cluster's CA: the only one trusted
    cert = "tls/node.pem"             # this node's certificate and key, when every
    key = "tls/node.key"              # machine keeps its own at the same path

    [nodes.a.tls]                     # or per node, in a file shared by every machine
    cert = "tls/a.pem"
    key = "tls/a.key"

Paths are relative to the cluster file. The files are read when the node starts, and
every error names the field it came from (``nodes.a.tls.key``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError
from ._field_errors import MissingField

if TYPE_CHECKING:
    from ..transport.tcp._tls import TlsConfig

__all__ = ["SECURITY_FIELDS", "Security", "TlsFiles", "parse_security"]

#: The top-level fields this module reads.
SECURITY_FIELDS = frozenset({"tls", "secret_file"})
_TLS_FIELDS = {"ca", "cert", "key"}
_NODE_TLS_FIELDS = {"cert", "key"}


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    """One node's TLS files, with the cluster-file field each came from."""

    ca: str
    cert: str
    key: str
    ca_field: str = "tls.ca"
    cert_field: str = "tls.cert"
    key_field: str = "tls.key"

    def load(self, source: str = "<memory>", node_id: str | None = None) -> TlsConfig:
        """Build the node's TLS contexts.

        Args:
            source: the cluster file, for messages.
            node_id: when given, the certificate must name this node, or every peer
                would refuse it; checked here so that the node with the wrong file is
                the one that says so.

        Raises:
            ConfigError: a file cannot be used, or the certificate names another node;
                names ``source`` and the field.
        """
        # Imported here: `almost-raft status` reads the cluster file and needs no ssl.
        from ..transport.tcp._tls import TlsConfig

        try:
            config = TlsConfig.from_files(ca=self.ca, cert=self.cert, key=self.key)
        except ConfigError as exc:
            field = {"ca": self.ca_field, "cert": self.cert_field, "key": self.key_field}
            raise ConfigError(f"{source}: {field[exc.field]}", exc.value, exc.fix) from None
        if node_id is not None:
            self._check_names(source, node_id)
        return config

    def _check_names(self, source: str, node_id: str) -> None:
        import ssl

        from ..transport.tcp._tls import certificate_names

        # The ssl module decodes a certificate file only through this private helper;
        # without it (another Python), the peers' check still refuses a wrong one.
        decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
        if decode is None:
            return
        try:
            names = certificate_names(decode(self.cert))
        except (ssl.SSLError, OSError, ValueError):
            return
        if node_id not in names:
            raise ConfigError(
                f"{source}: {self.cert_field}",
                self.cert,
                f"names {', '.join(sorted(names)) or 'no node'}, not this node {node_id!r}, "
                f"so every peer would refuse it: give this node its own certificate "
                f"(almost-raft certs --dir DIR --cluster CLUSTER {node_id})",
            )


@dataclasses.dataclass(frozen=True, slots=True)
class Security:
    """What the cluster file says about TLS and the shared secret; nothing by default."""

    tls: Mapping[str, TlsFiles] = dataclasses.field(default_factory=dict)
    """Each node's TLS files, by node id; empty when the cluster does not use TLS."""
    secret_file: str | None = None

    def load_secret(self, source: str = "<memory>") -> bytes | None:
        """Read the shared secret, or None when the cluster has none.

        Raises:
            ConfigError: the file is missing, unreadable or too short; names
                ``source`` and ``secret_file``.
        """
        if self.secret_file is None:
            return None
        from ..transport.tcp._auth import read_secret_file

        return read_secret_file(f"{source}: secret_file", self.secret_file)


def parse_security(
    raw: Mapping[str, Any], node_ids: list[str], base_dir: str | None = None
) -> Security:
    """Validate the security fields of a parsed cluster file.

    Args:
        raw: the whole parsed file.
        node_ids: the members, whose ``[nodes.ID.tls]`` tables are read from ``raw``.
        base_dir: the directory relative paths start from; None for the current one.

    Raises:
        ConfigError: a field is invalid or missing; names the field.
    """
    secret = raw.get("secret_file")
    secret_file = None if secret is None else _path("secret_file", secret, base_dir)
    nodes_raw = raw.get("nodes", {})
    tls_raw = raw.get("tls")
    if tls_raw is None:
        for node_id in node_ids:
            if "tls" in nodes_raw[node_id]:
                raise ConfigError(
                    f"nodes.{node_id}.tls",
                    nodes_raw[node_id]["tls"],
                    'needs a [tls] section with the cluster\'s CA: ca = "ca.pem"',
                )
        return Security({}, secret_file)
    _table("tls", tls_raw, _TLS_FIELDS)
    if "ca" not in tls_raw:
        raise MissingField("tls.ca", 'name the cluster CA\'s certificate: ca = "ca.pem"')
    ca = _path("tls.ca", tls_raw["ca"], base_dir)
    shared = _pair("tls", tls_raw, base_dir)
    files: dict[str, TlsFiles] = {}
    for node_id in node_ids:
        field = f"nodes.{node_id}.tls"
        node_tls = nodes_raw[node_id].get("tls")
        if node_tls is not None:
            _table(field, node_tls, _NODE_TLS_FIELDS)
        own = None if node_tls is None else _pair(field, node_tls, base_dir)
        chosen = own or shared
        if chosen is None:
            raise MissingField(
                f"{field}.cert", f"set cert and key in [{field}], or in [tls] for every node"
            )
        where = field if own is not None else "tls"
        files[node_id] = TlsFiles(
            ca, chosen[0], chosen[1], "tls.ca", f"{where}.cert", f"{where}.key"
        )
    return Security(files, secret_file)


def _pair(where: str, table: Mapping[str, Any], base_dir: str | None) -> tuple[str, str] | None:
    if "cert" not in table and "key" not in table:
        return None
    for name, other in (("cert", "key"), ("key", "cert")):
        if name not in table:
            raise MissingField(f"{where}.{name}", f"it must be set along with {where}.{other}")
    return (
        _path(f"{where}.cert", table["cert"], base_dir),
        _path(f"{where}.key", table["key"], base_dir),
    )


def _path(field: str, value: object, base_dir: str | None) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(field, value, "must be a file path string")
    # join() keeps an absolute value as it is. Paths stay strings: pathlib, with the
    # urllib.parse and ipaddress it imports, would cost every node 0.6 MiB.
    return value if base_dir is None else os.path.join(base_dir, value)


def _table(field: str, value: object, known: set[str]) -> None:
    if not isinstance(value, dict):
        raise ConfigError(field, value, f"must be a table: [{field}]")
    for key in value:
        if key not in known:
            raise ConfigError(
                f"{field}.{key}", value[key], f"unknown field; known: {', '.join(sorted(known))}"
            )

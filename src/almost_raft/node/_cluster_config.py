"""The cluster file ``almost-raft run`` and ``almost-raft status`` read (TOML).

Example::

    cluster = "scheduler"             # checked on every connection between nodes
    state_dir = "/var/lib/almost-raft" # this node keeps <state_dir>/<id>.state

    [election]                        # optional; these are the defaults
    election_timeout_ms = 1000        # drawn from [election_timeout_ms, election_timeout_max_ms)
    election_timeout_max_ms = 2000
    heartbeat_interval_ms = 100
    message_timeout_ms = 500
    # leader_down_delay_ms = 30       # turn length when the leader's process is gone; 0: off;
                                      # unset: measured (two round trips and a save)
    max_clock_drift = 0.01            # how much slower one clock may run than another's
    pre_vote = true                   # false: a node that cannot win still raises its term
    check_quorum = true               # false: a cut-off leader keeps its role

    [nodes.a]
    address = "10.0.0.1:7000"         # where peers reach node a
    http = "10.0.0.1:8000"            # optional: GET /status and /metrics

    [nodes.b]
    address = "10.0.0.2:7000"

The optional ``secret_file`` and ``[tls]`` fields are in :mod:`._cluster_security`.

Every error names the field (``nodes.b.address``) and says what would be valid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ..core._config import ElectionConfig
from ..core._errors import ConfigError
from ..core._messages import MAX_ID_LENGTH
from ._cluster_security import SECURITY_FIELDS, Security, parse_security
from ._field_errors import MissingField, in_file
from ._let_go import used_once

__all__ = ["ClusterConfig", "NodeEntry", "format_host_port", "parse_host_port"]

# The standard library's TOML reader, all of it: let go once the cluster file is read
# (the datetime module it needs stays, msgpack uses it too).
_TOML_READER = ("tomllib", "tomllib._parser", "tomllib._re", "tomllib._types")

_ELECTION_FIELDS = {
    "election_timeout_ms": "election_timeout",
    "election_timeout_max_ms": "election_timeout_max",
    "heartbeat_interval_ms": "heartbeat_interval",
    "message_timeout_ms": "message_timeout",
    "leader_down_delay_ms": "leader_down_delay",
}
# Fields where 0 is meaningful (it turns the behaviour off).
_ZERO_ALLOWED = {"leader_down_delay_ms"}
# The longest each may be. A longer election timeout leaves a cluster leaderless for more
# than a minute after every crash; beyond these a value is a typo, not a choice.
_MAX_MS = {
    "election_timeout_ms": 60_000,
    "election_timeout_max_ms": 120_000,
    "heartbeat_interval_ms": 30_000,
    "message_timeout_ms": 60_000,
    "leader_down_delay_ms": 60_000,
}
# What ElectionConfig leaves unset, in the file's unit.
_DEFAULT_MS = {
    "election_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
    "message_timeout_ms": 500,
}
# Switches that only turn a protection off: for tests and for comparing behaviours.
_ELECTION_FLAGS = ("pre_vote", "check_quorum")
# Fields passed on as they are; ElectionConfig checks them.
_ELECTION_PLAIN = ("max_clock_drift",)
_TOP_FIELDS = {"cluster", "state_dir", "election", "nodes", *SECURITY_FIELDS}
_NODE_FIELDS = {"address", "http", "tls", "admin"}


@dataclasses.dataclass(frozen=True, slots=True)
class NodeEntry:
    """One member of the cluster as the file describes it."""

    node_id: str
    address: tuple[str, int]
    http: tuple[str, int] | None = None
    #: Where the node serves the admin endpoint (``almost-raft members``); off if None.
    admin: tuple[str, int] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A parsed, validated cluster file."""

    cluster_id: str
    nodes: Mapping[str, NodeEntry]
    election: ElectionConfig
    state_dir: str | None = None
    source: str = "<memory>"
    security: Security = dataclasses.field(default_factory=Security)
    """TLS files and the shared secret's file; none by default."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClusterConfig:
        """Read and validate a cluster file.

        Raises:
            ConfigError: the file is missing, not TOML, or a field is invalid; the error
                names the file and the field.
        """
        path = os.fspath(path)
        # A node reads its cluster file once: the TOML reader is let go after it.
        with used_once(_TOML_READER):
            import tomllib

            try:
                with open(path, encoding="utf-8") as file:
                    raw = tomllib.loads(file.read())
            except FileNotFoundError as exc:
                raise ConfigError("--config", path, "no such file") from exc
            except OSError as exc:
                raise ConfigError("--config", path, f"cannot be read: {exc.strerror}") from exc
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError("--config", path, f"is not valid TOML: {exc}") from exc
            # This frame's reference would keep the module from being collected.
            del tomllib
        try:
            return cls.from_dict(raw, source=path, base_dir=os.path.dirname(path))
        except ConfigError as exc:
            raise in_file(path, exc) from None

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], *, source: str = "<memory>", base_dir: str | None = None
    ) -> ClusterConfig:
        """Validate an already parsed cluster file (see the module docstring for fields)."""
        _no_unknown("", raw, _TOP_FIELDS)
        cluster_id = raw.get("cluster")
        if cluster_id is None:
            raise MissingField(
                "cluster", 'name the cluster at the top of the file: cluster = "jobs"'
            )
        if not isinstance(cluster_id, str) or not cluster_id:
            raise ConfigError(
                "cluster", cluster_id, 'must be a non-empty string naming the cluster, e.g. "jobs"'
            )
        nodes_raw = raw.get("nodes")
        if nodes_raw is None:
            raise MissingField(
                "nodes", 'list the members, one table each: [nodes.a] address = "host:7000"'
            )
        if not isinstance(nodes_raw, dict) or not nodes_raw:
            raise ConfigError(
                "nodes",
                nodes_raw,
                'must list the members, one table each: [nodes.a] address = "host:7000"',
            )
        nodes = {node_id: _node(node_id, entry) for node_id, entry in nodes_raw.items()}
        _no_shared_address(nodes)
        state_dir = raw.get("state_dir")
        if state_dir is not None and (not isinstance(state_dir, str) or not state_dir):
            raise ConfigError("state_dir", state_dir, "must be a directory path string")
        state_path = None
        if state_dir is not None:
            state_path = state_dir if base_dir is None else os.path.join(base_dir, state_dir)
        election = _election(raw.get("election", {}))
        security = parse_security(raw, list(nodes), base_dir)
        return cls(cluster_id, nodes, election, state_path, source, security)

    def peers_of(self, node_id: str) -> dict[str, tuple[str, int]]:
        """The addresses of every member but ``node_id``."""
        return {n: e.address for n, e in self.nodes.items() if n != node_id}

    def entry(self, node_id: str) -> NodeEntry:
        """The entry of ``node_id``, or a ConfigError listing the known ids."""
        try:
            return self.nodes[node_id]
        except KeyError:
            known = ", ".join(sorted(self.nodes))
            raise ConfigError(
                "--id", node_id, f"is not a member in {self.source}; members are: {known}"
            ) from None


def parse_host_port(field: str, value: object) -> tuple[str, int]:
    """Parse ``"host:port"`` (``"[::1]:7000"`` for IPv6) or raise ConfigError naming ``field``."""
    fix = 'must be "HOST:PORT", e.g. "127.0.0.1:7000"'
    if value is None:
        raise MissingField(field, f"set it to {fix.removeprefix('must be ')}")
    if not isinstance(value, str):
        raise ConfigError(field, value, fix)
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(field, value, fix)
    return host, int(port_text)


def _fixed_port(field: str, value: object) -> tuple[str, int]:
    """A ``"host:port"`` others must reach, so port 0 (any free port) is refused."""
    address = parse_host_port(field, value)
    if address[1] == 0:
        raise ConfigError(
            field,
            value,
            "port 0 picks a random port that nobody else could know; give a fixed port, "
            'e.g. "127.0.0.1:7000"',
        )
    return address


def _no_shared_address(nodes: Mapping[str, NodeEntry]) -> None:
    """Refuse two listeners on one address: the second node would fail only when it binds."""
    seen: dict[tuple[str, int], str] = {}
    for node_id, entry in nodes.items():
        for name, address in (
            ("address", entry.address),
            ("http", entry.http),
            ("admin", entry.admin),
        ):
            if address is None:
                continue
            field = f"nodes.{node_id}.{name}"
            other = seen.setdefault(address, field)
            if other != field:
                raise ConfigError(
                    field,
                    format_host_port(address),
                    f"is also {other}; every node's address, http and admin need a port of "
                    "their own",
                )


def format_host_port(address: tuple[str, int]) -> str:
    """``"host:port"``, with brackets around an IPv6 host."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _node(node_id: object, entry: object) -> NodeEntry:
    field = f"nodes.{node_id}"
    if not isinstance(node_id, str) or not 0 < len(node_id) <= MAX_ID_LENGTH:
        raise ConfigError(field, node_id, f"a node id must have 1 to {MAX_ID_LENGTH} characters")
    if not isinstance(entry, dict):
        raise ConfigError(field, entry, 'must be a table: [nodes.a] address = "host:7000"')
    _no_unknown(field, entry, _NODE_FIELDS)
    address = _fixed_port(f"{field}.address", entry.get("address"))
    http = entry.get("http")
    admin = entry.get("admin")
    return NodeEntry(
        node_id,
        address,
        None if http is None else _fixed_port(f"{field}.http", http),
        None if admin is None else _fixed_port(f"{field}.admin", admin),
    )


def _election(raw: object) -> ElectionConfig:
    if not isinstance(raw, dict):
        raise ConfigError("election", raw, "must be a table: [election]")
    _no_unknown("election", raw, {*_ELECTION_FIELDS, *_ELECTION_FLAGS, *_ELECTION_PLAIN})
    ms: dict[str, int] = {}
    for key in _ELECTION_FIELDS:
        if key in raw:
            value = raw[key]
            lowest = 0 if key in _ZERO_ALLOWED else 1
            highest = _MAX_MS[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not lowest <= value <= highest
            ):
                raise ConfigError(
                    f"election.{key}",
                    value,
                    f"must be a whole number of ms from {lowest} to {highest}",
                )
            ms[key] = value
    _check_timings(ms)
    values: dict[str, float | bool] = {_ELECTION_FIELDS[k]: v / 1000 for k, v in ms.items()}
    for key in _ELECTION_FLAGS:
        if key in raw:
            flag = raw[key]
            if not isinstance(flag, bool):
                raise ConfigError(f"election.{key}", flag, "must be true or false")
            values[key] = flag
    for key in _ELECTION_PLAIN:
        if key in raw:
            values[key] = raw[key]
    try:
        return ElectionConfig(**values)  # type: ignore[arg-type]
    except ConfigError as exc:
        if exc.field in _ELECTION_PLAIN:
            raise ConfigError(f"election.{exc.field}", exc.value, exc.fix) from None
        raise


def _check_timings(ms: Mapping[str, int]) -> None:
    """ElectionConfig's rules between fields, in the milliseconds the file is written in.

    A rule broken only because of a default names the field the file did set, and says
    which default it clashed with.
    """
    timeout = ms.get("election_timeout_ms", _DEFAULT_MS["election_timeout_ms"])
    timeout_text = _setting(ms, "election_timeout_ms")
    timeout_max = ms.get("election_timeout_max_ms")
    if timeout_max is not None and timeout_max <= timeout:
        raise ConfigError(
            "election.election_timeout_max_ms",
            timeout_max,
            f"must be greater than {timeout_text}; leave it unset for twice that",
        )
    heartbeat = ms.get("heartbeat_interval_ms", _DEFAULT_MS["heartbeat_interval_ms"])
    if heartbeat * 2 > timeout:
        field, value = _blamed(ms, "heartbeat_interval_ms")
        raise ConfigError(
            f"election.{field}",
            value,
            f"{_setting(ms, 'heartbeat_interval_ms')} must be at most half of {timeout_text}, "
            "or followers time out between heartbeats; a tenth is typical"
            + _also(ms, "heartbeat_interval_ms"),
        )
    delay = ms.get("leader_down_delay_ms")
    if delay is not None and delay >= timeout:
        field, value = _blamed(ms, "leader_down_delay_ms")
        raise ConfigError(
            f"election.{field}",
            value,
            f"{_setting(ms, 'leader_down_delay_ms')} must be below {timeout_text}; "
            "a few round trips, such as 30 ms, is typical (0 turns it off)"
            + _also(ms, "leader_down_delay_ms"),
        )


def _setting(ms: Mapping[str, int], key: str) -> str:
    """``heartbeat_interval_ms (100 ms, the default)`` or ``... (50 ms)``."""
    if key in ms:
        return f"{key} ({ms[key]} ms)"
    return f"{key} ({_DEFAULT_MS[key]} ms, the default)"


def _also(ms: Mapping[str, int], key: str) -> str:
    return "" if key in ms else f"; set election.{key} as well, or a longer election_timeout_ms"


def _blamed(ms: Mapping[str, int], key: str) -> tuple[str, int]:
    """The field to name for a clash of ``key`` with election_timeout_ms: one the file set."""
    if key in ms:
        return key, ms[key]
    return "election_timeout_ms", ms["election_timeout_ms"]


def _no_unknown(where: str, raw: Mapping[str, Any], known: set[str]) -> None:
    for key in raw:
        if key not in known:
            field = f"{where}.{key}" if where else key
            raise ConfigError(field, raw[key], f"unknown field; known: {', '.join(sorted(known))}")

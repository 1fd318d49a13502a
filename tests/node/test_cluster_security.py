"""The cluster file's TLS and shared-secret fields, and a real cluster that uses both."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from almost_raft.cli._certs import make_certificates
from almost_raft.core._errors import ConfigError
from almost_raft.node._cluster_config import ClusterConfig
from almost_raft.node._process_cluster import ClusterTimings, ProcessCluster

SECRET = "0123456789abcdef0123456789abcdef\n"


def cluster_file(tmp_path: Path, extra_top: str = "", extra: str = "") -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(
        f"""cluster = "jobs"
{extra_top}
[nodes.a]
address = "127.0.0.1:7001"
[nodes.b]
address = "127.0.0.1:7002"
{extra}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_certificates(directory, "jobs", ["a", "b"])
    return directory


def test_no_security_fields_mean_neither_tls_nor_secret(tmp_path: Path) -> None:
    cluster = ClusterConfig.load(cluster_file(tmp_path))
    assert cluster.security.tls == {}
    assert cluster.security.load_secret() is None


def test_shared_tls_files_and_secret_are_relative_to_the_file(tmp_path: Path, pki: Path) -> None:
    (tmp_path / "cluster.secret").write_text(SECRET)
    path = cluster_file(
        tmp_path,
        extra_top='secret_file = "cluster.secret"',
        extra=f'[tls]\nca = "{pki}/ca.pem"\ncert = "node.pem"\nkey = "node.key"\n',
    )
    cluster = ClusterConfig.load(path)
    assert cluster.security.load_secret() == SECRET.strip().encode()
    for node in ("a", "b"):
        files = cluster.security.tls[node]
        assert files.ca == str(pki / "ca.pem")
        assert files.cert == str(tmp_path / "node.pem")
        assert files.key == str(tmp_path / "node.key")
    # The node's files are read when it starts, and the error names the field.
    with pytest.raises(ConfigError, match="no such file") as info:
        cluster.security.tls["a"].load(cluster.source)
    assert info.value.field == f"{path}: tls.cert"


def test_a_certificate_that_names_another_node_is_refused_at_start(
    tmp_path: Path, pki: Path
) -> None:
    path = cluster_file(
        tmp_path, extra=f'[tls]\nca = "{pki}/ca.pem"\ncert = "{pki}/b.pem"\nkey = "{pki}/b.key"\n'
    )
    cluster = ClusterConfig.load(path)
    assert cluster.security.tls["b"].load(cluster.source, "b") is not None
    with pytest.raises(ConfigError) as info:
        cluster.security.tls["a"].load(cluster.source, "a")
    assert info.value.field == f"{path}: tls.cert"
    assert "names b, not this node 'a'" in str(info.value)
    assert "almost-raft certs" in str(info.value)


def test_per_node_files_override_the_shared_ones(tmp_path: Path, pki: Path) -> None:
    path = cluster_file(
        tmp_path,
        extra=f"""[nodes.a.tls]
cert = "{pki}/a.pem"
key = "{pki}/b.key"
[tls]
ca = "{pki}/ca.pem"
cert = "{pki}/b.pem"
key = "{pki}/b.key"
""",
    )
    cluster = ClusterConfig.load(path)
    assert cluster.security.tls["a"].cert == str(pki / "a.pem")
    assert cluster.security.tls["b"].cert == str(pki / "b.pem")
    cluster.security.tls["b"].load()
    with pytest.raises(ConfigError, match="not the private key") as info:
        cluster.security.tls["a"].load(cluster.source)
    assert info.value.field == f"{path}: nodes.a.tls.key"


@pytest.mark.parametrize(
    ("extra_top", "extra", "field"),
    [
        ("", '[tls]\ncert = "c.pem"\nkey = "c.key"\n', "tls.ca"),
        ("", '[tls]\nca = "ca.pem"\n', "nodes.a.tls.cert"),
        ("", '[tls]\nca = "ca.pem"\ncert = "c.pem"\n', "tls.key"),
        ("", '[tls]\nca = "ca.pem"\ncrt = "c.pem"\n', "tls.crt"),
        ("", '[tls]\nca = 7\ncert = "c.pem"\nkey = "c.key"\n', "tls.ca"),
        ("", '[nodes.a.tls]\ncert = "a.pem"\nkey = "a.key"\n', "nodes.a.tls"),
        (
            "",
            '[nodes.b.tls]\nkey = "b.key"\n[tls]\nca = "ca.pem"\ncert = "c"\nkey = "k"\n',
            "nodes.b.tls.cert",
        ),
        ('secret_file = ""', "", "secret_file"),
        ("secret_file = 1", "", "secret_file"),
        ('tls = "on"', "", "tls"),
    ],
)
def test_every_security_error_names_its_field(
    tmp_path: Path, extra_top: str, extra: str, field: str
) -> None:
    path = cluster_file(tmp_path, extra_top, extra)
    with pytest.raises(ConfigError) as info:
        ClusterConfig.load(path)
    assert info.value.field == f"{path}: {field}"


@pytest.mark.parametrize(("content", "words"), [(None, "no such file"), ("short\n", "at least")])
def test_an_unusable_secret_file_names_the_field(
    tmp_path: Path, content: str | None, words: str
) -> None:
    if content is not None:
        (tmp_path / "cluster.secret").write_text(content)
    path = cluster_file(tmp_path, extra_top='secret_file = "cluster.secret"')
    cluster = ClusterConfig.load(path)
    with pytest.raises(ConfigError, match=words) as info:
        cluster.security.load_secret(cluster.source)
    assert info.value.field == f"{path}: secret_file"


class SecureCluster(ProcessCluster):
    """A ProcessCluster whose nodes use mutual TLS and a shared secret."""

    def _cluster_file(self, reader: str | None = None) -> str:
        assert self.directory is not None
        make_certificates(self.directory / "tls", self.cluster_id, self.ids)
        (self.directory / "cluster.secret").write_text(SECRET)
        text = 'secret_file = "cluster.secret"\n' + super()._cluster_file(reader)
        text += '\n[tls]\nca = "tls/ca.pem"\n'
        for node in self.ids:
            text += f'[nodes.{node}.tls]\ncert = "tls/{node}.pem"\nkey = "tls/{node}.key"\n'
        return text


_BAD = re.compile(r'^almost_raft_bad_frames_total\{reason="(\w+)"\} (\S+)$', re.MULTILINE)


def bad_counts(cluster: ProcessCluster, node: str) -> dict[str, float]:
    text = cluster.metrics(node)
    assert text is not None
    return {reason: float(value) for reason, value in _BAD.findall(text)}


@pytest.mark.slow
def test_a_cluster_with_tls_and_a_secret_elects_and_refuses_strangers(tmp_path: Path) -> None:
    timings = ClusterTimings(
        election_timeout_ms=300,
        election_timeout_max_ms=600,
        heartbeat_interval_ms=50,
        message_timeout_ms=200,
    )
    with SecureCluster(3, timings=timings, cluster_id="secure", parent=tmp_path) as cluster:
        leader, _ = cluster.wait_for_agreed_leader(deadline=30.0)
        follower = next(node for node in cluster.ids if node != leader)
        assert all(value == 0 for value in bad_counts(cluster, follower).values())
        # A stranger that speaks plain TCP gets nowhere and is counted.
        with socket.create_connection(cluster.addresses[follower], timeout=5.0) as sock:
            sock.sendall(b"\x00\x00\x00\x05hello")
            while sock.recv(1024):
                pass

        def counted() -> dict[str, Any] | None:
            counts = bad_counts(cluster, follower)
            return counts if counts.get("tls") == 1 else None

        cluster.wait_for(counted, 10.0, "the stranger to be counted under bad_frames{tls}")
        assert cluster.agreed_leader() is not None

"""Mutual TLS: only certificates from the cluster's CA get in, and only as the node they name.

Certificates are made at run time by ``almost-raft certs`` (the cryptography package),
into a temporary directory per test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from almost_raft.cli._certs import make_certificates
from almost_raft.cli._main import main
from almost_raft.core._errors import ConfigError
from almost_raft.core._messages import HeartBeat, TimeoutNow
from almost_raft.transport.tcp._handshake_frames import Handshake, encode_handshake
from almost_raft.transport.tcp._tls import TlsConfig, certificate_names
from almost_raft.transport.tcp._transport import TcpTransport
from almost_raft.transport.tcp._wire import PROTOCOL_VERSION, encode_message
from helpers.cluster import run_async
from helpers.transport import Inbox, eventually, eventually_async

pytestmark = pytest.mark.slow

CLUSTER = "tls-test"
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.1}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster CA with certificates for a, b and c, and a second CA with one for a."""
    directory = tmp_path_factory.mktemp("pki")
    make_certificates(directory / "cluster", CLUSTER, ["a", "b", "c"])
    make_certificates(directory / "rogue", "rogue", ["a"])
    return directory


def tls(pki: Path, node: str, *, ca: str = "cluster", issuer: str = "cluster") -> TlsConfig:
    """``node``'s contexts: trusting the CA in ``ca``, with its certificate from ``issuer``."""
    return TlsConfig.from_files(
        ca=pki / ca / "ca.pem", cert=pki / issuer / f"{node}.pem", key=pki / issuer / f"{node}.key"
    )


@contextlib.asynccontextmanager
async def nodes(
    configs: dict[str, TlsConfig | None],
) -> AsyncIterator[dict[str, tuple[TcpTransport, Inbox]]]:
    """Started transports with the given TLS settings, each knowing the others' addresses."""
    started: dict[str, tuple[TcpTransport, Inbox]] = {}
    try:
        for node_id, config in configs.items():
            transport = TcpTransport(
                listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER, tls=config, **FAST
            )
            started[node_id] = (transport, Inbox())
            await transport.start(node_id, started[node_id][1])
        for node_id, (transport, _) in started.items():
            for other_id, (other, _) in started.items():
                if other_id != node_id:
                    transport.set_peer_address(other_id, other.address)
        yield started
    finally:
        for transport, _ in started.values():
            await transport.close()


@run_async
async def test_nodes_with_certificates_from_the_cluster_ca_talk(pki: Path) -> None:
    async with nodes({"a": tls(pki, "a"), "b": tls(pki, "b")}) as cluster:
        (a, a_inbox), (b, b_inbox) = cluster["a"], cluster["b"]
        await a.send("b", HeartBeat(1, "a"))
        await b.send("a", HeartBeat(2, "b"))
        await eventually(lambda: b_inbox.messages == [HeartBeat(1, "a")], "a -> b")
        await eventually(lambda: a_inbox.messages == [HeartBeat(2, "b")], "b -> a")
        for transport in (a, b):
            assert transport.metrics.bad_tls == transport.metrics.bad_identity == 0


def refusals(*transports: TcpTransport) -> int:
    return sum(t.metrics.bad_tls + t.metrics.bad_identity for t in transports)


@pytest.mark.parametrize(
    "config_a",
    [
        pytest.param("rogue-ca", id="certificate-from-another-ca"),
        pytest.param("plain", id="no-tls-at-all"),
    ],
)
@run_async
async def test_a_peer_without_a_certificate_from_the_cluster_ca_is_refused(
    pki: Path, config_a: str
) -> None:
    # The rogue a trusts the cluster CA, so only b's refusal keeps it out.
    rogue = tls(pki, "a", issuer="rogue") if config_a == "rogue-ca" else None
    async with nodes({"a": rogue, "b": tls(pki, "b")}) as cluster:
        (a, a_inbox), (b, b_inbox) = cluster["a"], cluster["b"]

        async def refused() -> bool:
            # Keep both sides dialling until b has refused a's handshake.
            await a.send("b", HeartBeat(1, "a"))
            await b.send("a", HeartBeat(1, "b"))
            return b.metrics.bad_tls >= 1

        await eventually_async(refused, "b to refuse a's TLS handshake")
        assert b_inbox.messages == []
        assert a_inbox.messages == []
        assert b.metrics.handshakes_accepted == 0


@run_async
async def test_a_certificate_that_names_another_node_is_refused_both_ways(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "a" runs with c's certificate: a genuine one, from the cluster's CA.
    async with nodes({"a": tls(pki, "c"), "b": tls(pki, "b")}) as cluster:
        (a, a_inbox), (b, b_inbox) = cluster["a"], cluster["b"]
        await a.send("b", HeartBeat(1, "a"))
        await b.send("a", HeartBeat(1, "b"))
        # b refuses the handshake that claims a, and refuses to dial a certificate of c.
        await eventually(lambda: b.metrics.bad_identity >= 2, "b to refuse both connections")
        assert b_inbox.messages == []
        assert a_inbox.messages == []
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("claims 'a', its certificate names ['c']" in line for line in logged), logged
    assert any("dialled 'a', its certificate names ['c']" in line for line in logged), logged


@run_async
async def test_close_ends_a_connection_stuck_in_its_tls_handshake(pki: Path) -> None:
    transport = TcpTransport(
        listen=("127.0.0.1", 0),
        peers={},
        cluster_id=CLUSTER,
        tls=tls(pki, "b"),
        handshake_timeout=60.0,
    )
    await transport.start("b", Inbox())
    _, writer = await asyncio.open_connection(*transport.address)
    try:
        inbound = transport._inbound
        assert inbound is not None
        await eventually(lambda: bool(inbound._tls_handshaking), "a TLS handshake that stalls")
        assert transport.metrics.accepted == 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        await transport.close()
        assert loop.time() - started < 2.0
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@run_async
async def test_a_plaintext_handshake_to_a_tls_node_is_refused(pki: Path) -> None:
    async with nodes({"b": tls(pki, "b")}) as cluster:
        b, inbox = cluster["b"]
        b.set_peer_address("a", ("127.0.0.1", 1))
        reader, writer = await asyncio.open_connection(*b.address)
        writer.write(encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER, "a")))
        writer.write(encode_message(HeartBeat(5, "a")))
        async with asyncio.timeout(5.0):
            with contextlib.suppress(ConnectionResetError):
                await reader.read()
        writer.close()
        await eventually(lambda: b.metrics.bad_tls == 1, "the refusal to be counted")
        assert inbox.messages == []


@run_async
async def test_messages_in_the_tls_record_of_the_handshake_are_delivered(pki: Path) -> None:
    async with nodes({"b": tls(pki, "b")}) as cluster:
        b, inbox = cluster["b"]
        b.set_peer_address("a", ("127.0.0.1", 1))
        sent = [HeartBeat(term, "a") for term in range(1, 4)]
        _, writer = await asyncio.open_connection(
            *b.address, ssl=tls(pki, "a").client, server_hostname="127.0.0.1"
        )
        try:
            hello = encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER, "a"))
            writer.write(hello + b"".join(encode_message(m) for m in sent))
            await eventually(lambda: inbox.messages == sent, "three heartbeats")
            assert b.metrics.handshakes_accepted == 1
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


def test_certificate_names_come_from_san_and_common_name() -> None:
    peercert = {
        "subject": ((("organizationName", "x"),), (("commonName", "a"),)),
        "subjectAltName": (("DNS", "b"), ("URI", "spiffe://c"), ("IP Address", "10.0.0.1")),
    }
    assert certificate_names(peercert) == {"a", "b", "spiffe://c"}
    assert certificate_names(None) == frozenset()
    assert certificate_names({}) == frozenset()


def test_contexts_that_skip_verification_are_refused(pki: Path) -> None:
    good = tls(pki, "a")
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ConfigError) as info:
        TlsConfig(lax, good.client)
    assert info.value.field == "server"
    hostnames = ssl.create_default_context(cafile=str(pki / "cluster" / "ca.pem"))
    with pytest.raises(ConfigError, match="check_hostname") as info:
        TlsConfig(good.server, hostnames)
    assert info.value.field == "client"
    with pytest.raises(ConfigError) as info:
        TlsConfig(good.client, good.server)
    assert info.value.field == "server"
    with pytest.raises(ConfigError) as info:
        TcpTransport(listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER, tls=lax)  # type: ignore[arg-type]
    assert info.value.field == "tls"


def test_unusable_files_name_the_field(pki: Path, tmp_path: Path) -> None:
    cluster = pki / "cluster"
    ca, cert, key = cluster / "ca.pem", cluster / "a.pem", cluster / "a.key"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ({"ca": tmp_path / "missing.pem", "cert": cert, "key": key}, "ca", "no such file"),
        ({"ca": ca, "cert": tmp_path / "missing.pem", "key": key}, "cert", "no such file"),
        ({"ca": ca, "cert": cert, "key": tmp_path / "missing.key"}, "key", "no such file"),
        ({"ca": garbage, "cert": cert, "key": key}, "ca", "PEM"),
        ({"ca": ca, "cert": cert, "key": cluster / "b.key"}, "key", "not the private key"),
        ({"ca": ca, "cert": garbage, "key": key}, "cert", "PEM"),
    ]
    for files, field, words in cases:
        with pytest.raises(ConfigError, match=words) as info:
            TlsConfig.from_files(**files)
        assert info.value.field == field, files


def test_certs_command_makes_a_ca_once_and_certificates_that_verify(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    assert main(["certs", "--dir", str(out), "--cluster", "jobs", "a", "b"]) == 0
    ca_before = (out / "ca.pem").read_bytes()
    assert main(["certs", "--dir", str(out), "--cluster", "jobs", "c"]) == 0
    assert (out / "ca.pem").read_bytes() == ca_before
    for node in ("a", "b", "c"):
        assert (out / f"{node}.key").stat().st_mode & 0o077 == 0
        TlsConfig.from_files(ca=out / "ca.pem", cert=out / f"{node}.pem", key=out / f"{node}.key")
    assert (out / "ca.key").stat().st_mode & 0o077 == 0
    assert main(["certs", "--dir", str(out), "--cluster", "jobs", "bad id!"]) == 2


def readme_openssl_scripts() -> list[str]:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```sh\n")[1:]]


async def exchange_heartbeats(configs: dict[str, TlsConfig | None]) -> None:
    async with nodes(configs) as cluster:
        (a, a_inbox), (b, b_inbox) = cluster["a"], cluster["b"]
        await a.send("b", HeartBeat(1, "a"))
        await b.send("a", HeartBeat(2, "b"))
        await eventually(lambda: b_inbox.messages == [HeartBeat(1, "a")], "a -> b")
        await eventually(lambda: a_inbox.messages == [HeartBeat(2, "b")], "b -> a")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_readme_openssl_commands_make_certificates_that_work(tmp_path: Path) -> None:
    """The README's openssl recipe, run as written, makes files two nodes talk with."""
    scripts = [s for s in readme_openssl_scripts() if "openssl req" in s]
    assert len(scripts) == 2, "the README has one block for the CA and one per node"
    make_ca, make_node = scripts
    for script, node in ((make_ca, ""), (make_node, "a"), (make_node, "b")):
        done = subprocess.run(
            ["sh", "-euc", script],
            cwd=tmp_path,
            env={**os.environ, "NODE": node},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.key").stat().st_mode & 0o077 == 0
    configs: dict[str, TlsConfig | None] = {
        node: TlsConfig.from_files(
            ca=tmp_path / "ca.pem", cert=tmp_path / f"{node}.pem", key=tmp_path / f"{node}.key"
        )
        for node in ("a", "b")
    }
    asyncio.run(exchange_heartbeats(configs))


def test_certs_without_cryptography_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    assert main(["certs", "--dir", str(tmp_path), "--cluster", "jobs", "a"]) == 2
    assert "pip install 'almost-raft[tls]'" in capsys.readouterr().err
    assert not (tmp_path / "ca.pem").exists()


@run_async
async def test_a_close_over_tls_flushes_what_waits_for_the_dial(pki: Path) -> None:
    b_inbox = Inbox()
    b = TcpTransport(listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER, tls=tls(pki, "b"))
    a = TcpTransport(listen=("127.0.0.1", 0), peers={}, cluster_id=CLUSTER, tls=tls(pki, "a"))
    await b.start("b", b_inbox)
    await a.start("a", Inbox())
    try:
        b.set_peer_address("a", a.address)
        # Queued before the dial (connect, TLS handshake, hello) even began.
        a.set_peer_address("b", b.address)
        last = [HeartBeat(1, "a"), HeartBeat(2, "a"), TimeoutNow(3, "a")]
        for message in last:
            await a.send("b", message)
        await asyncio.wait_for(a.close(flush_timeout=3600.0), 10.0)
        assert a.metrics.dropped_not_connected == 0
        await eventually(lambda: b_inbox.messages == last, "the last messages at b")
    finally:
        await a.close()
        await b.close()

"""NamespaceNetwork: the kernel's TCP between two namespaces, delayed and partitioned."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from almost_raft.chaos import LinkState, NamespaceError, NamespaceNetwork

REASON = NamespaceNetwork.unavailable_reason()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"no network namespaces here: {REASON}"),
    pytest.mark.timeout(30),
]

PORT = 7000
DEADLINE = 10.0

# Echoes each connection back, one connection at a time, until stdin closes.
SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen()
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(100):
            conn.sendall(data)
"""

# Answers one command per line: "echo" (a round trip's ms) or "connect SECONDS".
CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
for line in sys.stdin:
    command, *rest = line.split()
    try:
        with socket.create_connection((host, port), timeout=float(rest[0]) if rest else 5) as c:
            if command == "echo":
                started = time.monotonic()
                c.sendall(b"x")
                c.recv(1)
                print(f"rtt {(time.monotonic() - started) * 1000:.1f}", flush=True)
            else:
                print("connected", flush=True)
    except TimeoutError:
        print("timeout", flush=True)
    except OSError as exc:
        print(f"error {exc}", flush=True)
"""


def namespaces_now() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def addresses_now() -> list[str]:
    return subprocess.run(
        ["ip", "-o", "-4", "addr"], capture_output=True, text=True
    ).stdout.splitlines()


def spawn(network: NamespaceNetwork, node: str, script: str, target: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*network.exec_prefix(node), sys.executable, "-c", script, target, str(PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def ask(process: subprocess.Popen[str], command: str) -> str:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


@pytest.fixture
def network() -> Iterator[NamespaceNetwork]:
    with NamespaceNetwork(["a", "b"], seed=3) as network:
        yield network
    names = [network.namespace(name) for name in network.names]
    assert not any(name in namespaces_now() for name in names)
    assert not any(network.harness_address in line for line in addresses_now())


def test_delay_partition_and_heal_over_the_kernels_tcp(network: NamespaceNetwork) -> None:
    assert all(network.namespace(name) in namespaces_now() for name in network.names)
    network.set_all(LinkState(delay=0.02))
    server = spawn(network, "b", SERVER, network.address("b"))
    client = spawn(network, "a", CLIENT, network.address("b"))
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        # Each way holds every packet 20 ms: the reply comes two delays later.
        answer = ask(client, "echo")
        assert answer.startswith("rtt "), answer
        assert float(answer.split()[1]) >= 40.0

        network.isolate("b")
        assert network.state("a", "b").cut
        assert network.state("b", "a").cut
        assert ask(client, "connect 1.0") == "timeout"
        partitioned = network.stats().partitioned
        assert partitioned >= 1

        network.heal_all()
        assert ask(client, f"connect {DEADLINE}") == "connected"
        stats = network.stats()
        assert stats.forwarded > 0
        assert stats.lost == 0
        assert stats.partitioned == partitioned
    finally:
        for process in (client, server):
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def test_a_process_started_in_a_namespace_is_that_process(network: NamespaceNetwork) -> None:
    # `ip netns exec` execs the command: the pid signalled is the program's own.
    process = subprocess.Popen(
        [*network.exec_prefix("a"), sys.executable, "-c", "import os; print(os.getpid())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=DEADLINE)
    assert int(out) == process.pid


def test_the_harness_reaches_a_node_and_links_are_named(network: NamespaceNetwork) -> None:
    assert network.links == [("a", "b"), ("b", "a")]
    assert network.address("a") != network.address("b") != network.harness_address
    server = spawn(network, "a", SERVER, network.address("a"))
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        with socket.create_connection((network.address("a"), PORT), timeout=DEADLINE) as conn:
            conn.sendall(b"hi")
            assert conn.recv(2) == b"hi"
    finally:
        server.kill()
        server.wait()
        for stream in (server.stdin, server.stdout):
            if stream is not None:
                stream.close()
    with pytest.raises(KeyError):
        network.set_state("a", "nobody", LinkState())


def links_now() -> list[str]:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()


def test_a_network_that_fails_to_start_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    before = links_now()
    network = NamespaceNetwork(["x", "y"])
    first = network.namespace("x")

    def refuse(self: NamespaceNetwork) -> None:
        raise NamespaceError("refused")

    monkeypatch.setattr(NamespaceNetwork, "_attach_harness", refuse)
    with pytest.raises(NamespaceError, match="refused"):
        network.start()
    assert first not in namespaces_now()
    assert links_now() == before

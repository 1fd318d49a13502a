"""The chaos harness: its checker, its schedule, its proxies, and one short real run."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from almost_raft.chaos import (
    FAULT_KINDS,
    LEADER,
    TERM_DECREASED,
    TWO_LEADERS_IN_TERM,
    ChaosOptions,
    LeaderEvent,
    LinkState,
    Outage,
    ProxyNetwork,
    StateSample,
    check,
    make_schedule,
    print_report,
    read_events,
    run_chaos,
)
from almost_raft.chaos.__main__ import main
from almost_raft.core._messages import HeartBeat, RequestVote
from almost_raft.transport.tcp._handshake_frames import Handshake, encode_handshake
from almost_raft.transport.tcp._wire import PROTOCOL_VERSION, encode_message

DEADLINE = 10.0
IDS = ["n1", "n2", "n3", "n4", "n5"]


# ---------------------------------------------------------------------------- checker


def log_line(node: str, leader: str | None, term: int, at: float) -> str:
    """A ``leader_changed`` line as ``almost-raft run --log-format json`` writes it."""
    return json.dumps(
        {
            "monotonic": at,
            "level": "info",
            "logger": "almost_raft.node",
            "message": "leadership changed",
            "node": node,
            "event": "leader_changed",
            "leader": leader,
            "term": term,
            "is_self": leader == node,
        }
    )


def write_logs(directory: Path, lines: dict[str, list[str]]) -> list[Path]:
    paths = []
    for node, node_lines in lines.items():
        path = directory / f"{node}.log"
        # Other lines, and a leader command's plain output, are skipped.
        path.write_text("\n".join(["not json", '{"event": "other"}', *node_lines]) + "\n")
        paths.append(path)
    return paths


def healthy_logs() -> dict[str, list[str]]:
    return {
        "n1": [log_line("n1", "n1", 1, 1.0), log_line("n1", None, 2, 3.0)],
        "n2": [log_line("n2", "n1", 1, 1.1), log_line("n2", "n2", 2, 3.5)],
        "n3": [log_line("n3", "n1", 1, 1.1), log_line("n3", "n2", 2, 3.6)],
    }


def events_of(paths: list[Path]) -> list[LeaderEvent]:
    return [event for path in paths for event in read_events(path)]


def test_the_checker_accepts_a_correct_run(tmp_path: Path) -> None:
    paths = write_logs(tmp_path, healthy_logs())
    result = check(events_of(paths), span=(0.5, 5.0))
    assert result.violations == ()
    assert result.elections == 2
    assert result.leaders == ("n1", "n2")
    # n1 led from 1.0 to 3.0, n2 from 3.5: before, between, nothing after.
    assert result.leaderless == ((0.5, 1.0), (3.0, 3.5))
    assert result.longest_leaderless == pytest.approx(0.5)
    assert main(["check", *map(str, paths)]) == 0


def test_the_checker_catches_two_leaders_in_one_term(tmp_path: Path) -> None:
    logs = healthy_logs()
    logs["n3"].append(log_line("n3", "n3", 2, 3.7))
    paths = write_logs(tmp_path, logs)
    result = check(events_of(paths))
    assert [v.kind for v in result.violations] == [TWO_LEADERS_IN_TERM]
    assert "term 2" in result.violations[0].message
    assert "n2 (at 3.500)" in result.violations[0].message
    assert "n3 (at 3.700)" in result.violations[0].message
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", *map(str, paths)]) == 1
    assert "two_leaders_in_term" in out.getvalue()


def test_the_checker_catches_a_term_going_backwards_in_a_log(tmp_path: Path) -> None:
    logs = healthy_logs()
    logs["n2"].append(log_line("n2", "n1", 1, 4.0))
    paths = write_logs(tmp_path, logs)
    result = check(events_of(paths))
    assert [v.kind for v in result.violations] == [TERM_DECREASED]
    assert result.violations[0].message.startswith("n2: term 1")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["check", *map(str, paths)]) == 1


def test_the_checker_catches_a_term_going_backwards_across_a_restart() -> None:
    events = [LeaderEvent("n1", "n1", 5, 1.0)]
    # The node logged term 5; after its kill the state file says 4: the term was lost.
    samples = [StateSample("n1", 4, 2.0), StateSample("n1", 6, 3.0)]
    result = check(events, samples)
    assert [v.kind for v in result.violations] == [TERM_DECREASED]
    assert "state file" in result.violations[0].message
    assert check(events, [StateSample("n1", 5, 2.0)]).violations == ()


def test_a_leader_that_is_down_leads_no_one() -> None:
    events = [LeaderEvent("n1", "n1", 1, 1.0), LeaderEvent("n2", "n2", 2, 4.0)]
    result = check(events, outages=[Outage("n1", 2.0, 3.0)], span=(1.0, 5.0))
    assert result.leaderless == ((2.0, 4.0),)


# ---------------------------------------------------------------------------- schedule


def test_a_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert make_schedule(3, IDS, 60) == make_schedule(3, IDS, 60)
    assert make_schedule(3, IDS, 60) != make_schedule(4, IDS, 60)


@pytest.mark.parametrize("seed", range(20))
def test_a_schedule_heals_in_time_and_keeps_a_majority_of_processes(seed: int) -> None:
    schedule = make_schedule(seed, IDS, 60)
    assert {fault.kind for fault in schedule} == set(FAULT_KINDS)
    for fault in schedule:
        assert 0 < fault.at < fault.ends <= 60
        if fault.kind in ("kill", "stop"):
            (node,) = fault.nodes
            assert node == LEADER or node in IDS
            down = [f for f in schedule if f.kind in ("kill", "stop") and f.at <= fault.at < f.ends]
            assert len(down) <= 2
        elif fault.kind == "partition":
            assert 1 <= len(fault.nodes) <= 2
        else:
            a, b = fault.nodes
            assert a != b
            assert {a, b} <= set(IDS)


@pytest.mark.parametrize("seed", range(10))
def test_in_three_nodes_one_process_at_most_is_down(seed: int) -> None:
    faults = [f for f in make_schedule(seed, ["a", "b", "c"], 60) if f.kind in ("kill", "stop")]
    assert faults
    for fault in faults:
        assert sum(1 for f in faults if f.at <= fault.at < f.ends) == 1


@pytest.mark.parametrize(
    ("nodes", "duration", "problem"),
    [(["a", "b"], 60.0, "three nodes"), (IDS, 1.0, "at least 2 s")],
    ids=["two-nodes", "too-short"],
)
def test_a_schedule_refuses_a_run_it_cannot_fill(
    nodes: list[str], duration: float, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        make_schedule(1, nodes, duration)


# ---------------------------------------------------------------------------- proxies


class Sink:
    """A plain TCP server that records the frames each accepted connection carries."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.server.getsockname()
        self.frames: list[list[bytes]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                frames: list[bytes] = []
                self.frames.append(frames)
            threading.Thread(target=self._read, args=(conn, frames), daemon=True).start()

    def _read(self, conn: socket.socket, frames: list[bytes]) -> None:
        with conn, contextlib.suppress(OSError):
            buffer = b""
            while data := conn.recv(65536):
                buffer += data
                while len(buffer) >= 4:
                    (length,) = struct.unpack(">I", buffer[:4])
                    if len(buffer) < 4 + length:
                        break
                    with self.lock:
                        frames.append(buffer[: 4 + length])
                    buffer = buffer[4 + length :]

    def received(self) -> list[list[bytes]]:
        with self.lock:
            return [list(frames) for frames in self.frames]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def sink_network() -> Iterator[tuple[Sink, ProxyNetwork]]:
    sink = Sink()
    try:
        with ProxyNetwork(["a", "b"], lambda node: sink.address, seed=1) as network:
            yield sink, network
    finally:
        sink.close()


HANDSHAKE = encode_handshake(Handshake(PROTOCOL_VERSION, "c", "a"))


def beat(term: int) -> bytes:
    return encode_message(HeartBeat(term, "a"))


def poll(condition: object, what: str) -> None:
    assert callable(condition)
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"waited {DEADLINE}s for {what}"
        time.sleep(0.01)


def assert_closed(sock: socket.socket) -> None:
    """Fail unless the proxy closed ``sock``: it never writes, so a read sees the end."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        data = sock.recv(1)
    assert data == b""


def dial(network: ProxyNetwork) -> socket.socket:
    return socket.create_connection(network.address("a", "b"), timeout=DEADLINE)


def test_a_healthy_link_passes_every_frame_in_order(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    frames = [HANDSHAKE, *(beat(term) for term in range(1, 21))]
    with dial(network) as sock:
        sock.sendall(b"".join(frames))
        poll(lambda: sink.received() == [frames], "every frame at the sink")
    assert network.stats()[("a", "b")].forwarded == 21


def test_a_cut_aborts_the_connection_at_once_and_heal_lets_the_sender_redial(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    with dial(network) as sock:
        sock.sendall(HANDSHAKE + beat(1))
        poll(lambda: sink.received() == [[HANDSHAKE, beat(1)]], "the first frames")
        network.set_state("a", "b", LinkState(cut=True))
        # The proxy closed the established connection: the sender's read ends.
        assert_closed(sock)
    assert network.stats()[("a", "b")].connections_cut == 1
    # While cut, a new connection is accepted (not refused) and its bytes vanish.
    with dial(network) as sock:
        sock.sendall(HANDSHAKE + beat(2))
        poll(lambda: network.stats()[("a", "b")].blackholed_bytes > 0, "the black hole")
        network.set_state("a", "b", LinkState())
        # Healing closes the black hole, so the sender redials through.
        assert_closed(sock)
    assert len(sink.received()) == 1
    with dial(network) as sock:
        sock.sendall(HANDSHAKE + beat(3))
        poll(lambda: sink.received()[1:] == [[HANDSHAKE, beat(3)]], "the frames after heal")


def test_drop_loses_messages_but_never_the_handshake(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    network.set_state("a", "b", LinkState(drop=1.0))
    with dial(network) as sock:
        sock.sendall(HANDSHAKE + b"".join(beat(t) for t in range(1, 11)))
        poll(lambda: network.stats()[("a", "b")].dropped == 10, "ten drops")
    assert sink.received() == [[HANDSHAKE]]
    network.set_state("a", "b", LinkState(drop=0.5))
    assert network.state("a", "b") == LinkState(drop=0.5)


def test_delay_holds_each_message_and_keeps_the_order(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    network.set_state("a", "b", LinkState(delay=0.3))
    messages = [encode_message(RequestVote(t, "a")) for t in (1, 2, 3)]
    with dial(network) as sock:
        sent = time.monotonic()
        sock.sendall(HANDSHAKE + b"".join(messages))
        poll(lambda: sink.received() == [[HANDSHAKE, *messages]], "the delayed frames")
        assert time.monotonic() - sent >= 0.3


def test_a_connection_to_a_node_that_is_down_is_closed() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = unused.getsockname()
    with ProxyNetwork(["a", "b"], lambda node: nowhere, seed=1) as network:
        try:
            sock = dial(network)
        except ConnectionResetError:
            # The proxy accepts in the kernel before its own accept runs, so its reset can
            # come before connect() returns: the connection was closed all the same.
            return
        with sock:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(HANDSHAKE)
            assert_closed(sock)


def test_jitter_varies_each_delay_but_never_the_order(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    network.set_state("a", "b", LinkState(delay=0.05, jitter=0.05))
    frames = [HANDSHAKE, *(beat(term) for term in range(1, 31))]
    with dial(network) as sock:
        sock.sendall(b"".join(frames))
        poll(lambda: sink.received() == [frames], "every frame, in order")


def test_a_lost_frame_arrives_a_retransmission_later_and_nothing_is_gone(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    network.set_state("a", "b", LinkState(loss=0.5))
    frames = [HANDSHAKE, *(beat(term) for term in range(1, 11))]
    with dial(network) as sock:
        sent = time.monotonic()
        sock.sendall(b"".join(frames))
        poll(lambda: sink.received() == [frames], "every frame, in order")
        # At least one of ten was lost at 50%, and TCP's retransmission waits 200 ms.
        assert time.monotonic() - sent >= 0.2
    stats = network.stats()[("a", "b")]
    assert stats.lost >= 1
    assert stats.dropped == 0
    with pytest.raises(ValueError, match="loss"):
        LinkState(loss=1.0)


def assert_reset(network: ProxyNetwork) -> None:
    """A dial that the proxy accepts is reset: at connect(), at the send, or at the read."""
    try:
        sock = dial(network)
    except ConnectionResetError:
        # The proxy accepts in the kernel before its own accept runs, so its reset can
        # come before connect() returns.
        return
    with sock:
        try:
            sock.sendall(HANDSHAKE)
        except (ConnectionResetError, BrokenPipeError):
            return
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


def test_a_refused_upstream_reaches_the_sender_as_a_refusal() -> None:
    # Bound but never listening, for the whole test: dials to it are refused, and no
    # listener of the proxy can be given the same port once it is free again.
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    nowhere = unused.getsockname()
    with unused, ProxyNetwork(["a", "b"], lambda node: nowhere, seed=1) as network:
        # The first dial is accepted by the proxy, so it can only be reset...
        assert_reset(network)
        # ...but the sender's next dial is refused, as the peer's own host refuses it.
        with pytest.raises(ConnectionRefusedError):
            dial(network).close()
        assert network.stats()[("a", "b")].refused == 1

        # A moment later the link accepts dials again, to carry them once the peer is back.
        def dial_accepted() -> bool:
            try:
                dial(network).close()
            except ConnectionRefusedError:
                return False
            return True

        poll(dial_accepted, "the link's listener to come back")


def test_a_stall_keeps_the_connection_and_releases_at_the_next_retransmission(
    sink_network: tuple[Sink, ProxyNetwork],
) -> None:
    sink, network = sink_network
    with dial(network) as sock:
        sock.sendall(HANDSHAKE)
        poll(lambda: sink.received() == [[HANDSHAKE]], "the handshake")
        network.set_state("a", "b", LinkState(stall=True))
        stalled = time.monotonic()
        sock.sendall(beat(1))
        # The heal must fall between the retransmissions at 0.2 s and 0.6 s: that
        # moment, not an event, is what the test is about.
        time.sleep(0.45)
        assert sink.received() == [[HANDSHAKE]]
        network.set_state("a", "b", LinkState())
        healed = time.monotonic()
        poll(lambda: sink.received() == [[HANDSHAKE, beat(1)]], "the held frame")
        # Retransmissions at 0.2 s and 0.6 s after the send: the heal at 0.45 s waits
        # for the second, on the same connection.
        assert time.monotonic() - stalled >= 0.55
        assert time.monotonic() - healed >= 0.05
    assert network.stats()[("a", "b")].connections_cut == 0


# ---------------------------------------------------------------------------- a real run


@pytest.mark.slow
def test_a_short_chaos_run_of_five_real_nodes_has_no_violation() -> None:
    out = io.StringIO()
    # Every node runs an exclusive leader command that ignores SIGTERM, stamping its life.
    report = run_chaos(ChaosOptions(seed=11, duration=35.0, commands="ignore-sigterm"), out=out)
    print_report(report, out)
    text = out.getvalue()
    assert report.check.violations == (), text
    assert report.command_overlaps == (), text
    assert report.command_gaps, text
    assert report.recovered_after is not None, text
    assert report.ok
    # This seed's schedule holds every kind of fault, and each was carried out.
    assert set(report.faults) == set(FAULT_KINDS), text
    assert report.restarts == report.faults["kill"]
    assert report.check.elections >= 2, text
    # Each node sent and received through the proxies: the per-node cluster files routed
    # every node's peers through them.
    assert len(report.links) == 20
    for node in ("n1", "n2", "n3", "n4", "n5"):
        assert sum(s.forwarded for (src, _), s in report.links.items() if src == node) > 0
        assert sum(s.forwarded for (_, dst), s in report.links.items() if dst == node) > 0
    # Samples after each kill and restart, and one per node at the end.
    assert report.samples >= 2 * report.restarts + 5
    assert "violations:           0" in text

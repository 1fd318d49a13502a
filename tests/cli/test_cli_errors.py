"""Every start-up mistake is one line that names the field and the fix, with exit status 2.

Most cases run the command line in this process (``main(argv)``), which is quick; a few
run ``almost-raft`` as a real process, to show the exit status and that no traceback is
printed where a user would see one.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from almost_raft.cli._main import main

CLUSTER = """\
cluster = "jobs"
state_dir = "state"

[nodes.a]
address = "127.0.0.1:{a}"
http = "127.0.0.1:{a_http}"

[nodes.b]
address = "127.0.0.1:{b}"

[nodes.c]
address = "127.0.0.1:{c}"
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def cluster_file(tmp_path: Path) -> Path:
    a, a_http, b, c = free_ports(4)
    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER.format(a=a, a_http=a_http, b=b, c=c))
    return path


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # `run` points the root logger at stderr; here pytest's capture must stay in place.
    monkeypatch.setattr("almost_raft.node._log_format.configure_logging", lambda *a: None)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit status and stderr of ``almost-raft ARGV`` run in this process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


# ---------------------------------------------------------------- the cluster file


def make_http_clash(path: Path) -> Path:
    text = path.read_text()
    address = text.split('address = "', 1)[1].split('"', 1)[0]
    path.write_text(text.replace(text.split('http = "', 1)[1].split('"', 1)[0], address, 1))
    return path


def make_port_clash(path: Path) -> Path:
    """nodes.c.address becomes nodes.a.address."""
    head = path.read_text().split("[nodes.c]\n", 1)[0]
    a_address = head.split('address = "', 1)[1].split('"', 1)[0]
    path.write_text(f'{head}[nodes.c]\naddress = "{a_address}"\n')
    return path


CASES: list[tuple[str, Callable[[Path], Path], list[str]]] = [
    ("http equal to address", make_http_clash, ["nodes.a.http", "is also nodes.a.address"]),
    ("two nodes on one port", make_port_clash, ["nodes.c.address", "is also nodes.a.address"]),
    (
        "zero port",
        lambda p: edit(p, 'address = "127.0.0.1:', 'address = "127.0.0.1:0" #'),
        ["cluster.toml: nodes.a.address", "port 0", "give a fixed port"],
    ),
    (
        "misspelled field",
        lambda p: edit(p, "[nodes.b]\naddress", "[nodes.b]\nx_address"),
        ["nodes.b.x_address", "unknown field"],
    ),
    (
        "timeout without upper bound",
        lambda p: edit(
            p, "[nodes.a]", "[election]\nelection_timeout_ms = 9223372036854775807\n[nodes.a]"
        ),
        ["election.election_timeout_ms", "from 1 to 60000"],
    ),
    (
        "heartbeat too slow, in ms",
        lambda p: edit(
            p,
            "[nodes.a]",
            "[election]\nelection_timeout_ms = 150\nheartbeat_interval_ms = 500\n[nodes.a]",
        ),
        ["election.heartbeat_interval_ms=500", "(500 ms)", "election_timeout_ms (150 ms)"],
    ),
    (
        "a default heartbeat too slow for a short timeout",
        lambda p: edit(p, "[nodes.a]", "[election]\nelection_timeout_ms = 150\n[nodes.a]"),
        ["election.election_timeout_ms=150", "100 ms, the default", "set election.heartbeat"],
    ),
    (
        "maximum timeout not above the minimum",
        lambda p: edit(
            p,
            "[nodes.a]",
            "[election]\nelection_timeout_ms = 500\nelection_timeout_max_ms = 400\n[nodes.a]",
        ),
        ["election.election_timeout_max_ms=400", "election_timeout_ms (500 ms)"],
    ),
]


@pytest.mark.parametrize(
    ("broken", "words"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("command", ["run", "status"])
def test_a_bad_cluster_file_is_one_line_naming_the_field(
    cluster_file: Path,
    capsys: pytest.CaptureFixture[str],
    broken: Callable[[Path], Path],
    words: list[str],
    command: str,
) -> None:
    broken(cluster_file)
    argv = [command, "--config", str(cluster_file)] + (["--id", "b"] if command == "run" else [])
    code, err = run_cli(argv, capsys)
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"almost-raft {command}: ")
    for word in words:
        assert word in line


def test_a_missing_field_says_missing_instead_of_none(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(cluster_file, '[nodes.b]\naddress = "', '[nodes.b]\n# "')
    code, err = run_cli(["status", "--config", str(cluster_file)], capsys)
    assert code == 2
    line = one_line(err)
    assert "nodes.b.address is missing" in line
    assert "None" not in line


# ---------------------------------------------------------------- run's start-up


def test_a_state_dir_that_is_a_file_is_named(
    cluster_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    argv = [
        "run",
        "--config",
        str(cluster_file),
        "--id",
        "b",
        "--state-dir",
        str(tmp_path / "a-file"),
    ]
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert "--state-dir" in one_line(err)
    assert "is a file, not a directory" in err


def test_a_state_dir_that_cannot_be_created_is_named(
    cluster_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    edit(cluster_file, 'state_dir = "state"', 'state_dir = "a-file/state"')
    code, err = run_cli(["run", "--config", str(cluster_file), "--id", "b"], capsys)
    assert code == 2
    line = one_line(err)
    assert "cluster.toml: state_dir" in line
    assert "cannot be created" in line


def test_a_state_dir_that_cannot_be_written_is_named(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Even root may not create files in /sys (os.access() would say root may).
    if not Path("/sys").is_dir():
        pytest.skip("needs Linux's /sys")
    probe = Path("/sys/.almost-raft-test-probe")
    try:
        probe.touch()
    except OSError:
        pass
    else:
        probe.unlink()
        pytest.skip("needs a directory that cannot be written")
    argv = ["run", "--config", str(cluster_file), "--id", "b", "--state-dir", "/sys"]
    code, err = run_cli(argv, capsys)
    assert code == 2
    line = one_line(err)
    assert "--state-dir='/sys'" in line
    assert "cannot be written" in line


def test_a_missing_state_dir_says_how_to_set_it(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(cluster_file, 'state_dir = "state"\n', "")
    code, err = run_cli(["run", "--config", str(cluster_file), "--id", "b"], capsys)
    assert code == 2
    line = one_line(err)
    assert "state_dir is missing" in line
    assert "--state-dir" in line


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["/no/such/cmd"], ["COMMAND='/no/such/cmd'", "no such file"]),
        (["no-such-command-anywhere"], ["not found in PATH"]),
        (["/"], ["is a directory"]),
    ],
)
def test_a_leader_command_that_cannot_run_is_found_at_start(
    cluster_file: Path, capsys: pytest.CaptureFixture[str], command: list[str], words: list[str]
) -> None:
    code, err = run_cli(["run", "--config", str(cluster_file), "--id", "b", "--", *command], capsys)
    assert code == 2
    line = one_line(err)
    for word in words:
        assert word in line


def test_a_leader_command_that_is_not_executable_is_found_at_start(
    cluster_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    code, err = run_cli(
        ["run", "--config", str(cluster_file), "--id", "b", "--", str(script)], capsys
    )
    assert code == 2
    assert "is not executable" in one_line(err)


def test_a_port_in_use_names_the_field_and_address(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = cluster_file.read_text()
    port = int(text.split('[nodes.b]\naddress = "127.0.0.1:', 1)[1].split('"', 1)[0])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, err = run_cli(["run", "--config", str(cluster_file), "--id", "b"], capsys)
    assert code == 2
    line = one_line(err)
    assert f"nodes.b.address='127.0.0.1:{port}'" in line
    assert "is in use by another process" in line


def test_an_http_option_equal_to_a_node_address_is_named(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = cluster_file.read_text()
    address = text.split('[nodes.b]\naddress = "', 1)[1].split('"', 1)[0]
    argv = ["run", "--config", str(cluster_file), "--id", "b", "--http", address]
    code, err = run_cli(argv, capsys)
    assert code == 2
    line = one_line(err)
    assert f"--http='{address}'" in line
    assert "is also nodes.b.address" in line


def test_an_http_port_in_use_names_the_field(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["run", "--config", str(cluster_file), "--id", "b", "--http", f"127.0.0.1:{port}"]
        code, err = run_cli(argv, capsys)
    assert code == 2
    line = one_line(err)
    assert f"--http='127.0.0.1:{port}'" in line
    assert "in use" in line


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["run", "--config", "x", "--id", "a", "--grace", "abc"],
            ["--grace", "'abc' is not a number"],
        ),
        (["run", "--config", "x", "--id", "a", "--grace", "nan"], ["--grace", "'nan' is not"]),
        (["demo", "--nodes", "2"], ["--nodes", "between 3 and 99"]),
        (["demo", "--nodes", "x"], ["--nodes", "'x' is not a whole number"]),
        (["demo", "--seed", "7"], ["--seed needs --in-process"]),
        (["status", "--config", "x", "--timeout", "0"], ["--timeout", "above 0"]),
    ],
)
def test_a_bad_option_is_a_readable_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    code, err = run_cli(argv, capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    for word in words:
        assert word in last
    assert "invalid" not in last  # argparse's "invalid _positive_seconds value"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from almost_raft import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"almost-raft {__version__}\n"


def test_help_documents_defaults_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "status"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--grace GRACE seconds from SIGTERM to SIGKILL when COMMAND must stop (default 10)" in out
    )
    assert "json: one JSON object per line" in out
    assert "exit status: 0 when every reachable node agrees on one leader" in out


def test_status_without_http_says_how_to_enable_it(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(cluster_file, 'http = "', '# http = "')
    code, err = run_cli(["status", "--config", str(cluster_file)], capsys)
    assert code == 2
    line = one_line(err)
    assert "no node in" in line
    assert 'add http = "HOST:PORT" to each [nodes.ID] table' in line


def test_status_names_the_address_it_asked(
    cluster_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = cluster_file.read_text()
    http = text.split('http = "', 1)[1].split('"', 1)[0]
    code = main(["status", "--config", str(cluster_file), "--timeout", "2"])
    out = capsys.readouterr().out
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("a "))
    assert http in row
    assert "no: connection refused" in row
    row_b = next(line for line in out.splitlines() if line.startswith("b "))
    assert "add http" in row_b


# ---------------------------------------------------------------- as a real process


@pytest.mark.slow
def test_a_real_process_exits_2_with_one_line(cluster_file: Path) -> None:
    make_port_clash(cluster_file)
    done = subprocess.run(
        [sys.executable, "-m", "almost_raft", "run", "--config", str(cluster_file), "--id", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "is also nodes.a.address" in one_line(done.stderr)


def wait_for_line(stream: IO[str], words: str, deadline: float = 30.0) -> None:
    """Read ``stream`` until a line holds ``words`` (the process is up to that point)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = stream.readline()
        if words in line:
            return
        if not line:
            break
    raise AssertionError(f"no line with {words!r}")


@pytest.mark.slow
def test_a_second_ctrl_c_while_a_node_stops_prints_no_traceback(cluster_file: Path) -> None:
    node = subprocess.Popen(
        [sys.executable, "-m", "almost_raft", "run", "--config", str(cluster_file), "--id", "b"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stderr is not None
        wait_for_line(node.stderr, "listening on")
        node.send_signal(signal.SIGINT)
        node.send_signal(signal.SIGINT)
        _, err = node.communicate(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    assert node.returncode == 0, err
    assert "Traceback" not in err
    assert "shutting down" in err


@pytest.mark.slow
def test_a_second_ctrl_c_while_the_demo_cleans_up_prints_no_traceback() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "almost_raft", "demo", "--in-process", "--kills", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        wait_for_line(demo.stdout, "killing leader")
        for _ in range(3):
            demo.send_signal(signal.SIGINT)
            # Apart, so that each is a Ctrl-C of its own: signals of one kind sent
            # together may arrive as one.
            time.sleep(0.01)
        _, err = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err

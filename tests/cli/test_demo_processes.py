"""The default demo: real processes fail over after each kill, and none is left behind."""

from __future__ import annotations

import io
import os
import re

import pytest

from almost_raft.cli._main import main
from almost_raft.cli.demo._processes import ProcessDemoOptions, run_process_demo

pytestmark = pytest.mark.slow


def test_process_demo_fails_over_after_every_kill_and_leaves_no_process() -> None:
    out = io.StringIO()
    options = ProcessDemoOptions(nodes=3, kills=2, steady_time=0.2)
    failovers = run_process_demo(options, out)
    assert len(failovers) == 2
    for failover in failovers:
        assert failover.new_leader != failover.old_leader
        assert failover.new_term > failover.old_term
        assert 0 < failover.elected_after <= failover.agreed_after < options.deadline
    text = out.getvalue()
    assert text.count("SIGKILL leader") == 2
    # Whether the leader stayed is test_cluster_processes' business: a loaded machine may
    # hold an extra election during the demo, and the demo says so.
    assert len(re.findall(r"\] n\d rejoined", text)) == 2
    assert "failover until all live nodes agree: min" in text
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", text)]
    assert len(pids) == 3 + 2 + 2  # the nodes, the two killed leaders, the two restarts
    directory = re.search(r"state files in (\S+);", text)
    assert directory is not None
    assert not os.path.exists(directory.group(1))
    for pid in set(pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cli_runs_the_in_process_demo_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--in-process", "--nodes", "3", "--kills", "1", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "in-memory network" in text
    assert "over 1 kills" in text

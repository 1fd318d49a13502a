"""The in-process demo: it elects, fails over after each kill, and reports what it measured."""

from __future__ import annotations

import asyncio
import io

import pytest

from almost_raft.cli._main import main
from almost_raft.cli.demo._in_process import DemoOptions, run_in_process_demo


def test_demo_fails_over_after_every_kill() -> None:
    out = io.StringIO()
    options = DemoOptions(nodes=5, kills=3, seed=7, steady_time=0.3)
    failovers = asyncio.run(run_in_process_demo(options, out))
    assert len(failovers) == 3
    for failover in failovers:
        assert failover.new_leader != failover.old_leader
        assert failover.new_term > failover.old_term
        assert 0 < failover.elected_after <= failover.agreed_after < options.deadline
    text = out.getvalue()
    assert "killing leader" in text
    assert "failover until all live nodes agree: min" in text


def test_cli_rejects_a_bad_cluster_size(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--nodes", "0"])
    assert info.value.code == 2
    assert "--nodes" in capsys.readouterr().err


def test_cli_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out

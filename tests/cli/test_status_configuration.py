"""``almost-raft status`` shows the configuration the nodes hold, and flags who differs."""

from __future__ import annotations

import io
from typing import Any

import pytest

from almost_raft.cli._configuration_view import (
    HeldConfiguration,
    configuration_cell,
    held_configuration,
)
from almost_raft.cli._status import NodeReport, print_cluster_status
from almost_raft.node._cluster_config import NodeEntry

ABC = {
    "a": {"voter": True, "address": "10.0.0.1:7000"},
    "b": {"voter": True, "address": "10.0.0.2:7000"},
    "c": {"voter": False, "address": None},
}


def configuration(
    version: int,
    term: int,
    *,
    committed: bool = True,
    pending: bool = False,
    members: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "version": version,
        "term": term,
        "committed_version": version if committed else version - 1,
        "committed": committed,
        "change_pending": pending,
        "members": ABC if members is None else members,
    }


def status(role: str, config: dict[str, Any] | None, term: int = 4) -> dict[str, Any]:
    return {"role": role, "term": term, "leader": "a", "peers": {}, "configuration": config}


def report(node: str, answer: dict[str, Any] | None) -> NodeReport:
    port = 7000 + ord(node)
    entry = NodeEntry(node, ("127.0.0.1", port), ("127.0.0.1", port + 100))
    return NodeReport(entry, answer, None if answer is not None else "connection refused")


def render(*reports: NodeReport) -> tuple[bool, list[str]]:
    out = io.StringIO()
    agreed = print_cluster_status(list(reports), out)
    return agreed, out.getvalue().splitlines()


def row(lines: list[str], node: str) -> str:
    return next(line for line in lines if line.startswith(f"{node} "))


def test_nodes_that_agree_show_one_committed_configuration_and_its_members() -> None:
    agreed, lines = render(
        report("a", status("leader", configuration(3, 2))),
        report("b", status("follower", configuration(3, 2))),
        report("c", status("follower", configuration(3, 2))),
    )
    assert agreed
    assert "CONFIG" in lines[0]
    assert row(lines, "b").endswith("v3")
    assert "configuration v3 (made in term 2), committed (as leader a holds it):" in lines
    members = lines[
        lines.index("configuration v3 (made in term 2), committed (as leader a holds it):") + 1 :
    ]
    assert members[:3] == [
        "  a  voter      10.0.0.1:7000",
        "  b  voter      10.0.0.2:7000",
        "  c  non-voter  -",
    ]
    assert lines[-1] == "every reachable node holds this configuration"


def test_a_node_with_an_older_version_is_flagged() -> None:
    agreed, lines = render(
        report("a", status("leader", configuration(3, 2))),
        report("b", status("follower", configuration(3, 2))),
        report("c", status("follower", configuration(2, 1, members={"a": {}, "b": {}, "c": {}}))),
    )
    # The same leader everywhere: the exit status says so, whatever the configurations.
    assert agreed
    assert row(lines, "c").endswith("v2 (older)")
    assert "nodes that differ:" in lines
    assert "  c holds an older configuration, v2 (made in term 1)" in lines


def test_a_pending_change_is_flagged_on_the_leader_and_the_followers_that_have_it() -> None:
    with_d = {**ABC, "d": {"voter": False, "address": "10.0.0.4:7000"}}
    _, lines = render(
        report(
            "a",
            status("leader", configuration(4, 2, committed=False, pending=True, members=with_d)),
        ),
        report("b", status("follower", configuration(4, 2, committed=False, members=with_d))),
        report("c", status("follower", configuration(3, 2))),
        report("d", None),
    )
    assert row(lines, "a").endswith("v4 (change pending)")
    assert row(lines, "b").endswith("v4 (not known committed)")
    assert row(lines, "c").endswith("v3 (older)")
    assert row(lines, "d").endswith("-")
    assert "configuration v4 (made in term 2), not known committed (as leader a holds it):" in lines
    assert "  d  non-voter  10.0.0.4:7000" in lines
    assert lines[lines.index("nodes that differ:") + 1 :] == [
        "  a has a change of members under way",
        "  b does not know v4 (made in term 2) committed yet",
        "  c holds an older configuration, v3 (made in term 2)",
    ]


def test_without_a_leader_the_newest_configuration_is_shown() -> None:
    agreed, lines = render(
        report("a", {**status("follower", configuration(5, 3)), "leader": None}),
        report("b", {**status("candidate", configuration(4, 2)), "leader": None}),
    )
    assert not agreed
    assert "configuration v5 (made in term 3), committed (the newest, held by a):" in lines
    assert "  b holds an older configuration, v4 (made in term 2)" in lines
    assert row(lines, "b").endswith("v4 (older)")


def test_no_configuration_anywhere_says_so() -> None:
    _, lines = render(report("a", None), report("b", {"role": "follower", "term": 1}))
    assert lines[-1] == "no reachable node reported a configuration"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({}, None),
        ({"configuration": "v3"}, None),
        ({"configuration": {"version": "3"}}, None),
        ({"configuration": {"version": True}}, None),
        # An earlier release: no term or committed flag, members as a mapping.
        (
            {
                "configuration": {
                    "version": 3,
                    "committed_version": 3,
                    "members": {"a": {"voter": True}},
                }
            },
            HeldConfiguration(3, None, True, False, (("a", True, None),)),
        ),
        (
            {"configuration": {"version": 2, "term": "x", "members": {"b": "?", "a": None}}},
            HeldConfiguration(2, None, False, False, (("a", False, None), ("b", False, None))),
        ),
    ],
)
def test_a_status_answer_is_read_defensively(
    answer: dict[str, Any], expected: HeldConfiguration | None
) -> None:
    assert held_configuration(answer) == expected


def test_a_starting_configuration_is_named_so() -> None:
    start = HeldConfiguration(0, 0, False, False, (("a", True, None),))
    assert configuration_cell(start, start) == "v0 (starting)"
    assert configuration_cell(None, start) == "-"

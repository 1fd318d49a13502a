"""Transcript tests: each file in ``testdata`` is a script of commands and their output.

Set ``ALMOST_RAFT_REWRITE=1`` (or pass ``--rewrite``) to write the actual output back into
the files instead of failing; then read ``git diff tests/core/testdata`` as the review.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from helpers.interaction._env import Env
from helpers.interaction._script import Case, ScriptError, parse, render

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def run_transcript(text: str, name: str) -> str:
    """Run every command of a transcript; return the transcript with the actual outputs."""
    chunks = parse(text, name)
    outputs: dict[int, list[str]] = {}
    with Env() as env:
        for chunk in chunks:
            if isinstance(chunk, Case):
                try:
                    outputs[chunk.line] = env.handle(chunk.command)
                except Exception as exc:
                    raise AssertionError(
                        f"{name}:{chunk.line}: {chunk.command!r} failed: {exc!r}"
                    ) from exc
    return render(chunks, outputs)


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_transcript(path: Path, rewrite: bool) -> None:
    original = path.read_text()
    actual = run_transcript(original, path.name)
    if actual == original:
        return
    if rewrite:
        path.write_text(actual)
        return
    diff = "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"{path.name} (expected)",
            f"{path.name} (actual)",
        )
    )
    pytest.fail(f"transcript differs; rerun with ALMOST_RAFT_REWRITE=1 to accept:\n{diff}")


def test_there_are_transcripts() -> None:
    assert len(SCRIPTS) >= 12


SMALL = """\
# one node
add-nodes solo seed=1
----
solo: follower term=0 vote=none leader=none clock=0.000 deadline=1.107

status
----
{status}
"""


def test_a_correct_transcript_reproduces_itself() -> None:
    text = SMALL.format(
        status="solo: follower term=0 vote=none leader=none clock=0.000 deadline=1.107"
    )
    assert run_transcript(text, "small") == text


def test_a_wrong_expectation_is_replaced_by_the_actual_output() -> None:
    text = SMALL.format(status="solo: leader term=9")
    actual = run_transcript(text, "small")
    assert actual != text
    assert "solo: follower term=0 vote=none" in actual.split("status\n----\n")[1]
    assert actual.startswith("# one node\nadd-nodes solo seed=1\n")


def test_a_command_without_separator_is_a_script_error() -> None:
    with pytest.raises(ScriptError, match="small:2"):
        parse("# x\nstatus\nnot a separator\n", "small")


def test_an_unknown_command_fails_the_transcript() -> None:
    with pytest.raises(AssertionError, match="unknown command"):
        run_transcript("frobnicate\n----\nok\n", "small")

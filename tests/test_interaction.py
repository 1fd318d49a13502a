"""Transcript tests: each file in ``testdata`` is a script of commands and their output.

Set ``ALMOST_RAFT_REWRITE=1`` (or pass ``--rewrite``) to write the actual output back into
the files instead of failing; then read ``git diff tests/testdata`` as the review.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from interaction._env import Env
from interaction._script import Case, parse, render

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_transcript(path: Path, rewrite: bool) -> None:
    original = path.read_text()
    chunks = parse(original, path.name)
    outputs: dict[int, list[str]] = {}
    with Env() as env:
        for chunk in chunks:
            if isinstance(chunk, Case):
                try:
                    outputs[chunk.line] = env.handle(chunk.command)
                except Exception as exc:
                    raise AssertionError(
                        f"{path.name}:{chunk.line}: {chunk.command!r} failed: {exc!r}"
                    ) from exc
    actual = render(chunks, outputs)
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

"""The docs build fails on a broken reference, so a renamed public name cannot rot there.

``make docs`` (part of ``make test``) builds the real docs; this shows that the same build
catches a reference to a public name that does not exist, and lets one to a private class
through as text.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = pytest.mark.slow


def build(docs: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-n", "-b", "html", docs, out],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("references", "fails"),
    [
        ([":class:`almost_raft.NoSuchElection`", ":meth:`Election.no_such_method`"], True),
        # A private class is shown as text; a public name resolves.
        ([":class:`MissingField`", ":class:`~almost_raft.Election`"], False),
    ],
    ids=["broken", "private-and-public"],
)
def test_a_broken_reference_fails_the_docs_build(
    tmp_path: Path, references: list[str], fails: bool
) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_build"))
    with (docs / "guarantees.rst").open("a", encoding="utf-8") as page:
        page.write("".join(f"\nSee {reference}.\n" for reference in references))
    done = build(docs, tmp_path / "html")
    assert (done.returncode != 0) is fails, done.stderr
    if fails:
        assert done.stderr.count("reference target not found") == len(references)

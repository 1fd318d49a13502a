"""Shared pytest options."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        help="write actual transcript output into tests/core/testdata instead of failing "
        "(same as ALMOST_RAFT_REWRITE=1)",
    )


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    """Whether transcript tests should rewrite their expected output."""
    flag: bool = request.config.getoption("--rewrite")
    return flag or os.environ.get("ALMOST_RAFT_REWRITE") == "1"

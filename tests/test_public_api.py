"""The package root: every public name, its public path, and when the names are imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import almost_raft

ROOT = Path(almost_raft.__file__)


def test_every_public_name_is_there_and_shows_the_public_path() -> None:
    for name in almost_raft.__all__:
        value = getattr(almost_raft, name)
        assert value.__module__ == "almost_raft", name
    assert set(almost_raft.__all__) <= set(dir(almost_raft))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(almost_raft, "no_such_name")  # noqa: B009


# In a fresh interpreter: which of the modules defining public names ``import almost_raft``
# loads, which after one name is used, and the module another name's class then shows.
_FRESH = """
import sys
import almost_raft
def loaded():
    return [m for m in almost_raft._DEFINED_IN if "almost_raft" + m in sys.modules]
print(loaded())
almost_raft.Node
print(loaded())
print(almost_raft.ControlLeaderChanged.__module__)
"""


def test_the_public_names_are_imported_together_on_first_use() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, timeout=60, check=True
    )
    before, after, shown = result.stdout.splitlines()
    assert before == "[]"
    assert after == str(list(almost_raft._DEFINED_IN))
    assert shown == "almost_raft"


def type_checking_imports(source: str) -> dict[str, tuple[str, ...]]:
    """What the ``if TYPE_CHECKING:`` block of ``source`` imports, by module."""
    imports: dict[str, tuple[str, ...]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                module = "." * statement.level + (statement.module or "")
                imports[module] = tuple(alias.name for alias in statement.names)
    return imports


def test_the_type_checkers_imports_are_where_the_package_finds_the_names() -> None:
    # mypy reads the TYPE_CHECKING block, the package reads _DEFINED_IN: they must agree.
    assert type_checking_imports(ROOT.read_text()) == almost_raft._DEFINED_IN
    assert sorted(n for names in almost_raft._DEFINED_IN.values() for n in names) == sorted(
        almost_raft.__all__
    )


def test_the_comparison_catches_a_name_left_out_of_one_of_them() -> None:
    broken = ROOT.read_text().replace("    from .seed._node import Node\n", "", 1)
    assert type_checking_imports(broken) != almost_raft._DEFINED_IN

"""The package's layers import one way only, and the core does no I/O.

Every module's imports are read with ``ast`` (nothing is imported to check it). A layer
may import from its own folder and from the layers below it:

    core < store, transport < runtime < seed, node < cli

and ``sim`` and ``chaos`` may use any layer but ``cli``. The core may import only the
standard library's pure modules. The last tests show the checker fails on a broken tree.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "almost_raft"

#: Each layer's rank; a module may import only from layers of a lower rank, or its own.
RANK = {
    "core": 0,
    "store": 1,
    "transport": 1,
    "runtime": 2,
    "seed": 3,
    "node": 3,
    "sim": 4,
    "chaos": 4,
    "cli": 5,
}
#: Layers of one rank that may still use each other (the test tools share a checker).
ALLOWED_SIDEWAYS = {("chaos", "sim")}
#: The root modules: the public API, and ``python -m almost_raft``.
ROOT_MODULES = {"__init__", "__main__"}
#: What the core may import from the standard library: nothing that does I/O, reads a
#: clock or starts threads.
CORE_STDLIB = {
    "__future__",
    "abc",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "itertools",
    "json",
    "logging",
    "math",
    "operator",
    "random",
    "typing",
}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module) for every import in the file at ``path``."""
    name = module_name(path, package)
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, *([node.module] if node.module else [])])
                if node.module is None:
                    # ``from . import x``: each name is a module of that package.
                    for alias in node.names:
                        yield node.lineno, f"{target}.{alias.name}"
                    continue
                yield node.lineno, target
            elif node.module is not None:
                yield node.lineno, node.module


def layer_of(module: str) -> str | None:
    """The layer of a module of the package, or ``None`` for a root module."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ROOT_MODULES:
        return None
    return parts[1]


def violations(package: Path) -> list[str]:
    """Every import that breaks the layer rule, as ``file:line: message``."""
    found = []
    root = package.name
    for path in sorted(package.rglob("*.py")):
        source = module_name(path, package)
        layer = layer_of(source)
        where = f"{path.relative_to(package.parent)}"
        if layer is None:
            if len(source.split(".")) > 1 and source.split(".")[1] not in ROOT_MODULES:
                found.append(f"{where}: module outside every layer")
            continue
        if layer not in RANK:
            found.append(f"{where}: folder {layer!r} is not a known layer")
            continue
        for line, target in imports_of(path, package):
            top = target.split(".")[0]
            if top != root:
                if layer == "core" and top in sys.stdlib_module_names and top not in CORE_STDLIB:
                    found.append(f"{where}:{line}: the core imports {target}, which is not pure")
                elif layer == "core" and top not in sys.stdlib_module_names:
                    found.append(f"{where}:{line}: the core imports third-party {target}")
                continue
            other = layer_of(target)
            if other is None:
                if target != root:
                    found.append(f"{where}:{line}: imports the root module {target}")
                else:
                    found.append(f"{where}:{line}: imports the public package {target}")
                continue
            if other == layer or (layer, other) in ALLOWED_SIDEWAYS:
                continue
            if RANK.get(other, 99) >= RANK[layer]:
                found.append(f"{where}:{line}: {layer} imports {target} from the {other} layer")
    return found


def import_cycles(package: Path) -> list[list[str]]:
    """Module-level import cycles among the package's modules."""
    graph: dict[str, set[str]] = {}
    modules = {module_name(path, package): path for path in package.rglob("*.py")}
    for name, path in modules.items():
        graph[name] = {
            target
            for _, target in imports_of(path, package)
            if target in modules and target != name
        }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_every_import_runs_down_the_layers() -> None:
    assert violations(PACKAGE) == []


def test_no_import_cycles() -> None:
    assert import_cycles(PACKAGE) == []


def test_the_package_root_holds_only_the_api() -> None:
    root_files = sorted(path.name for path in PACKAGE.iterdir() if path.is_file())
    assert root_files == ["__init__.py", "__main__.py", "py.typed"]


def _copy_package(tmp_path: Path) -> Path:
    copy = tmp_path / "almost_raft"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return copy


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        (
            "core/_quorum.py",
            "from ..runtime._driver import Runtime\n",
            "core imports almost_raft.runtime._driver from the runtime layer",
        ),
        ("core/_quorum.py", "import socket\n", "the core imports socket, which is not pure"),
        (
            "store/_store.py",
            "from ..node._run import run_node\n",
            "store imports almost_raft.node._run from the node layer",
        ),
        (
            "transport/tcp/_wire.py",
            "from ...cli._main import main\n",
            "transport imports almost_raft.cli._main from the cli layer",
        ),
    ],
)
def test_the_checker_catches_an_upward_import(
    tmp_path: Path, module: str, line: str, expected: str
) -> None:
    copy = _copy_package(tmp_path)
    target = copy / module
    target.write_text(line + target.read_text(encoding="utf-8"), encoding="utf-8")
    found = violations(copy)
    assert len(found) == 1
    assert expected in found[0]


def test_the_checker_catches_an_import_cycle(tmp_path: Path) -> None:
    copy = _copy_package(tmp_path)
    quorum = copy / "core" / "_quorum.py"
    quorum.write_text("from . import _state_machine\n" + quorum.read_text(encoding="utf-8"))
    cycles = import_cycles(copy)
    assert any("almost_raft.core._quorum" in cycle for cycle in cycles)

"""Sphinx configuration of the almost-raft documentation (``make docs``)."""

from __future__ import annotations

from typing import Any

import almost_raft

project = "almost-raft"
author = "almost-raft contributors"
copyright = "2026, almost-raft contributors"
release = almost_raft.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

# The docstrings are Google style (Args:, Returns:, Raises:, Attributes:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_class_signature = "separated"

# Every reference must resolve (the build runs with -n -W), except to the standard
# library: its inventory would have to be downloaded at every build.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(abc|asyncio|collections|collections\.abc|typing|random|ssl|os|enum|types)\..*"),
    # Private types that public signatures and docstrings mention: by design they are not
    # in the reference (their module paths start with an underscore).
    (r"py:.*", r"almost_raft\.(\w+\.)*_\w+\..*"),
    # Attributes named in docstrings that autodoc documents as part of their class text.
    (r"py:attr", r"(skipped|leader_changes_dropped)"),
    (r"py:.*", r"(Any|Callable|Awaitable|Iterator|AsyncIterator|Sequence|Mapping|Iterable)"),
    (r"py:.*", r"(Literal|Self|TypeVar|T|Coroutine|Generic|AbstractSet)"),
    (r"py:class", r"(PathLike|Queue|Random|SSLContext|TracebackType|Enum|Exception|ValueError)"),
    (r"py:class", r"(BaseException|object|int|float|str|bytes|bool|None|NoneType|dict|list)"),
    (r"py:class", r"(tuple|set|frozenset|type|Future|Task|Event|Lock)"),
]

html_theme = "alabaster"
html_theme_options = {"description": "Raft leader election for Python", "fixed_sidebar": True}
exclude_patterns = ["_build"]


def _api_reference() -> str:
    """reST for every name in ``almost_raft.__all__``, under the groups its comments give.

    Generated from the package's own ``__init__.py``, so that a public name added there
    is in the reference without anyone remembering to list it.
    """
    import pathlib
    import re

    source = pathlib.Path(almost_raft.__file__).read_text(encoding="utf-8")
    names = source[source.index("__all__ = [") :]
    names = names[: names.index("\n]")]
    lines: list[str] = []
    for line in names.splitlines()[1:]:
        line = line.strip()
        if line.startswith("#"):
            title = line.lstrip("# ")
            lines += ["", title, "-" * len(title), ""]
        elif match := re.match(r'"(\w+)"', line):
            name = match.group(1)
            kind = (
                "autofunction"
                if callable(getattr(almost_raft, name)) and name.islower()
                else "autoclass"
            )
            lines += [f".. {kind}:: {name}", ""]
    listed = {line.split(":: ")[1] for line in lines if ":: " in line}
    missing = set(almost_raft.__all__) - listed
    if missing:
        raise RuntimeError(f"names in __all__ the reference could not place: {sorted(missing)}")
    return "\n".join(lines) + "\n"


def _add_api_reference(app: object, docname: str, source: list[str]) -> None:
    if docname == "api":
        source[0] += "\n" + _api_reference()


def _private_names() -> frozenset[str]:
    """Classes and functions the package defines but does not export."""
    import importlib
    import inspect
    import pkgutil

    names: set[str] = set()
    for module_info in pkgutil.walk_packages(almost_raft.__path__, "almost_raft."):
        if module_info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is what importing it does
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(
                value, "__module__", ""
            ).startswith("almost_raft."):
                names.add(name)
    return frozenset(names - set(almost_raft.__all__))


_PRIVATE = _private_names()


def _private_reference(app: object, env: object, node: Any, contnode: Any) -> Any:
    """Show a docstring's reference to a private class (``LeaderDown.begin``) as text.

    Private names are not in the reference by design; a misspelled public name still
    fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    head = node.get("reftarget", "").removeprefix("almost_raft.").split(".")[0]
    return contnode if head in _PRIVATE else None


def setup(app: object) -> None:
    app.connect("source-read", _add_api_reference)  # type: ignore[attr-defined]
    app.connect("missing-reference", _private_reference)  # type: ignore[attr-defined]

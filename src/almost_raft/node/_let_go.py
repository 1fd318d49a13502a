"""Letting go of modules a long-lived process used once, so that their memory is reused.

``almost-raft run`` lives for months. What it imports only to start (its command line's
parser, the cluster file's TOML reader) would otherwise hold its memory for good; once
let go and collected, the node's later objects take up that memory instead of new pages.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["let_go", "used_once"]


def let_go(modules: Iterable[str]) -> None:
    """Remove ``modules`` from ``sys.modules`` and collect them: a later import loads
    them afresh."""
    for name in modules:
        _unregister(name)
    # Their objects are in reference cycles (classes, functions and their module's
    # dict), which the collector may not visit for hours.
    gc.collect()


@contextmanager
def used_once(modules: Sequence[str]) -> Iterator[None]:
    """Let go of those of ``modules`` that the block loaded, once it ends. What was
    loaded before it (by pytest, or a program that calls ``main()``) stays."""
    loaded_before = {name for name in modules if name in sys.modules}
    try:
        yield
    finally:
        let_go(name for name in modules if name not in loaded_before)


def _unregister(name: str) -> None:
    module = sys.modules.pop(name, None)
    package, _, attribute = name.rpartition(".")
    if module is not None and getattr(sys.modules.get(package), attribute, None) is module:
        delattr(sys.modules[package], attribute)

"""The command line is read once, and what only reading it needs is let go afterwards."""

from __future__ import annotations

import subprocess
import sys

import almost_raft.cli._main as cli_main

RUN = ["run", "--config", "c.toml", "--id", "a", "--http", "127.0.0.1:7000"]

# In a fresh interpreter, reads RUN twice, then prints the two results, the parsing-only
# modules still loaded, whether the package still names the parser module, and how many
# objects of those modules are still alive. argv[1] == "keep" breaks the forgetting, to
# show that the probe sees what is left.
_PROBE = f"""
import gc, sys
import almost_raft.cli._main as cli_main
if sys.argv[1:] == ["keep"]:
    cli_main._PARSING_ONLY = ()
first = cli_main._parse({RUN!r})
second = cli_main._parse({RUN!r})
print(first == second, first.subcommand, first.http)
print(",".join(m for m in ("argparse", "gettext", "almost_raft.cli._parser") if m in sys.modules))
print(hasattr(sys.modules["almost_raft.cli"], "_parser"))
gc.collect()
modules = {{"argparse", "gettext", "almost_raft.cli._parser"}}
print(sum(
    1
    for o in gc.get_objects()
    if getattr(o, "__module__", None) in modules or type(o).__module__ in modules
))
"""


def _probe(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_nothing_of_the_parser_is_left_once_the_command_line_is_read() -> None:
    parsed, loaded, named, alive = _probe()
    assert parsed == "True run ('127.0.0.1', 7000)"
    assert loaded == ""
    assert named == "False"
    assert alive == "0"


def test_the_probe_sees_a_parser_that_is_kept() -> None:
    _, loaded, named, alive = _probe("keep")
    assert loaded == "argparse,gettext,almost_raft.cli._parser"
    assert named == "True"
    assert int(alive) > 0


def test_modules_loaded_before_the_command_line_was_read_stay() -> None:
    # pytest itself uses argparse.
    argparse_before = sys.modules["argparse"]
    args = cli_main._parse(RUN)
    assert args is not None
    assert args.node_id == "a"
    assert sys.modules["argparse"] is argparse_before

"""Transcript files: commands, each followed by the output it must produce.

A file is a sequence of cases separated by blank lines::

    # Comments and blank lines are kept as they are.
    campaign a
    ----
    INFO a: asking for pre-votes for term 1
    a->b RequestVote term=1 pre

The line ``----`` ends the command; the expected output runs to the next blank line or
the end of the file. Output never contains a blank line (an empty result prints ``ok``),
so a case always ends unambiguously. :func:`render` writes a file back with new outputs,
which is how expected outputs are rewritten for a reviewer to read as a diff.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Case", "ScriptError", "parse", "render"]

SEPARATOR = "----"


class ScriptError(Exception):
    """A transcript file is malformed (not a failed expectation: a broken file)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One command and the output expected from it."""

    line: int
    command: str
    expected: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Verbatim:
    """Comment and blank lines, kept as they are when the file is rewritten."""

    lines: tuple[str, ...]


Chunk = Case | Verbatim


def parse(text: str, name: str) -> list[Chunk]:
    """Split a transcript into its cases and the text between them.

    Raises:
        ScriptError: a command is not followed by ``----``.
    """
    lines = text.splitlines()
    chunks: list[Chunk] = []
    verbatim: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            verbatim.append(line)
            i += 1
            continue
        if verbatim:
            chunks.append(Verbatim(tuple(verbatim)))
            verbatim = []
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ScriptError(f"{name}:{i + 1}: command {line!r} is not followed by {SEPARATOR}")
        start = i + 2
        end = start
        while end < len(lines) and lines[end].strip():
            end += 1
        chunks.append(Case(i + 1, line.strip(), tuple(lines[start:end])))
        i = end
    if verbatim:
        chunks.append(Verbatim(tuple(verbatim)))
    return chunks


def render(chunks: list[Chunk], outputs: dict[int, list[str]]) -> str:
    """Write the transcript back, with ``outputs[case.line]`` as each case's output."""
    lines: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, Verbatim):
            lines.extend(chunk.lines)
        else:
            lines.append(chunk.command)
            lines.append(SEPARATOR)
            lines.extend(outputs.get(chunk.line, chunk.expected))
    return "\n".join(lines) + "\n"

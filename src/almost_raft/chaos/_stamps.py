"""Leader commands that stamp their lives, and the checker that finds two at once.

Every node runs :data:`STAMPING_COMMAND` as its leader command. It appends ``start``,
then a ``tick`` every few milliseconds, then ``stop`` if it is let go (SIGTERM, unless
told to ignore it), each with its node, term, pid and the CLOCK_BOOTTIME reading, to one
file that all commands on the machine share. A command killed by SIGKILL writes no stop,
but its last tick says, to within a tick, when it last ran.

Two commands overlapped if one started before another's last stamp. That is all
:func:`overlaps` looks for, so it holds on any schedule of faults; :func:`gaps` measures
the other side, the time from one command's last stamp to the next one's start.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

__all__ = ["STAMPING_COMMAND", "CommandLife", "Stamp", "gaps", "lives", "overlaps", "read_stamps"]

#: ``python -c STAMPING_COMMAND PATH [ignore-sigterm]``: the leader command.
STAMPING_COMMAND = """
import os, signal, sys, time
path = sys.argv[1]
ignore = sys.argv[2:] == ["ignore-sigterm"]
node, term = os.environ["ALMOST_RAFT_NODE_ID"], os.environ["ALMOST_RAFT_TERM"]
clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def stamp(what):
    os.write(fd, f"{what} {node} {term} {os.getpid()} {time.clock_gettime(clock)!r}\\n".encode())
def stop(signum, frame):
    stamp("stop")
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore else stop)
stamp("start")
while True:
    time.sleep(0.005)
    stamp("tick")
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Stamp:
    """One line of the stamp file."""

    what: str
    node: str
    term: int
    pid: int
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class CommandLife:
    """One command's run: from its start stamp to its last stamp (CLOCK_BOOTTIME)."""

    node: str
    term: int
    pid: int
    start: float
    last: float


def read_stamps(path: Path) -> list[Stamp]:
    """Every complete line of the stamp file, in the order written."""
    if not path.exists():
        return []
    stamps = []
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) == 5:
            stamps.append(Stamp(words[0], words[1], int(words[2]), int(words[3]), float(words[4])))
    return stamps


def lives(stamps: list[Stamp]) -> list[CommandLife]:
    """Each command's life, by start time."""
    first: dict[int, Stamp] = {}
    last: dict[int, float] = {}
    for stamp in stamps:
        if stamp.what == "start":
            first[stamp.pid] = stamp
        last[stamp.pid] = max(last.get(stamp.pid, stamp.at), stamp.at)
    found = [
        CommandLife(start.node, start.term, pid, start.at, last[pid])
        for pid, start in first.items()
    ]
    return sorted(found, key=lambda life: life.start)


def overlaps(stamps: list[Stamp]) -> list[str]:
    """Every pair of commands that ran at the same time, described; empty if none."""
    found = []
    ordered = lives(stamps)
    for index, later in enumerate(ordered):
        for earlier in ordered[:index]:
            if later.start < earlier.last:
                found.append(
                    f"{later.node}'s command (term {later.term}) started at {later.start:.4f}, "
                    f"{earlier.last - later.start:.4f}s before {earlier.node}'s (term "
                    f"{earlier.term}) last ran"
                )
    return found


def gaps(stamps: list[Stamp]) -> list[float]:
    """Seconds from each command's last stamp to the next command's start."""
    ordered = lives(stamps)
    return [b.start - a.last for a, b in itertools.pairwise(ordered)]

"""Children that do not outlive the process that started them (Linux)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

__all__ = ["signal_on_parent_death"]

_PR_SET_PDEATHSIG = 1


def signal_on_parent_death(signum: signal.Signals) -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send ``signum`` to the child when this process dies.

    Returns ``None`` where the kernel offers no such thing; the child then simply
    outlives a parent that dies without stopping it.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Imported here, not at the top: ctypes.util alone pulls in shutil, tempfile, bz2 and
    # lzma (about 0.5 MiB of RSS), which a node without children never needs.
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signum)
        # The parent may have died between fork and prctl; then nobody would stop us.
        if os.getppid() != parent:
            os._exit(1)

    return hook

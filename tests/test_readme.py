"""The README's complete programs run and do what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = [
    block
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    if "asyncio.run(main())" in block
]


def test_readme_has_runnable_programs() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("program", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_program_runs(program: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "term" in done.stdout

"""What a user gets from ``pip install almost-raft``: a working node, demo and /metrics.

The wheel and the sdist are built from this tree, the wheel is installed with no extras
into a fresh virtual environment (its two dependencies from a local wheelhouse, so that
nothing else can slip in), and the installed ``almost-raft`` runs the demo. The sdist is
unpacked and a part of its own test suite runs from it.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import almost_raft

ROOT = Path(__file__).resolve().parent.parent
VERSION = almost_raft.__version__

pytestmark = pytest.mark.slow


def run(argv: list[str | Path], *, cwd: Path | None = None, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    log = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT])
    # setuptools reports deprecated configuration (the old license table) as warnings.
    assert "Deprecat" not in log, log
    return out


def test_the_wheel_carries_the_license_and_the_metadata_users_filter_on(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"almost_raft-{VERSION}.dist-info/METADATA").decode()
    assert f"almost_raft-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "almost_raft/py.typed" in names
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: msgpack" in metadata
    assert "Requires-Dist: prometheus-client" in metadata
    assert "Project-URL: " in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata
    # The long description tells a pip user what to run, not just how to use a checkout.
    assert "pip install almost-raft" in metadata
    assert "almost-raft demo" in metadata


def test_a_plain_install_runs_the_demo_and_serves_metrics(dist: Path, tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    # The dependencies at the versions this tree is tested with, from pip's cache.
    pins = [
        f"{name}=={importlib.metadata.version(name)}" for name in ("msgpack", "prometheus-client")
    ]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary",
            ":all:",
            "--dest",
            wheelhouse,
            *pins,
        ]
    )
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    (wheel,) = dist.glob("*.whl")
    run(
        [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheelhouse, wheel]
    )

    assert run([venv / "bin" / "almost-raft", "--version"]).strip() == f"almost-raft {VERSION}"
    installed = run([python, "-m", "pip", "list", "--format", "freeze"])
    assert "cryptography" not in installed  # the tls extra was not asked for

    demo = run([venv / "bin" / "almost-raft", "demo", "--nodes", "3", "--kills", "1"], cwd=tmp_path)
    assert "failover until all live nodes agree" in demo

    metrics = run(
        [
            python,
            "-c",
            "import asyncio\n"
            "from almost_raft import Election, InMemoryNetwork\n"
            "from almost_raft.node._prometheus import metrics_text\n"
            "async def main():\n"
            "    election = Election('a', [], InMemoryNetwork().transport('a'))\n"
            "    print(metrics_text(election, None).decode())\n"
            "asyncio.run(main())\n",
        ],
        cwd=tmp_path,
    )
    assert "almost_raft_term" in metrics


def test_the_sdist_runs_its_own_tests(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(tmp_path, filter="data")
        else:
            # Python 3.11 before 3.11.4 has no extraction filters; the archive is the one
            # this test just built.
            archive.extractall(tmp_path)
    tree = tmp_path / f"almost_raft-{VERSION}"
    for needed in ("LICENSE", "tests/helpers/cluster.py", "tests/core/testdata/prevote.txt"):
        assert (tree / needed).is_file(), needed
    env_src = tree / "src"
    out = run(
        [
            sys.executable,
            "-c",
            # The sdist's own package, not this tree's, is the one under test.
            f"import sys; sys.path.insert(0, {str(env_src)!r}); import almost_raft, pytest; "
            f"assert almost_raft.__file__.startswith({str(env_src)!r}), almost_raft.__file__; "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
            "'tests/core/test_interaction.py', 'tests/core/test_quorum.py', "
            "'tests/node/test_cluster_config.py']))",
        ],
        cwd=tree,
    )
    assert " passed" in out

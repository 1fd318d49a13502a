"""What a running node's memory is made of: the modules it imports, and what each holds.

    .venv/bin/python benchmarks/import_cost.py              # the 30 costliest modules
    .venv/bin/python benchmarks/import_cost.py --top 80

One ``almost-raft run`` node of a 3-node cluster file (its peers never start) runs
with ``--http`` under tracemalloc, which records, for every module it imports, the
Python memory still allocated when the module is loaded and garbage has been collected,
less what the modules it imported hold themselves: its code, functions, classes (for a
dataclass, the methods generated for it) and module-level objects. Modules the node let
go of again (its command line's parser) are tabled apart. Once the node has answered
``GET /status`` the table is taken; then the node is asked for ``/metrics`` once, and
the modules that first scrape imports are tabled apart. A bare ``python -c 'import
asyncio'`` is measured the same way, and the modules it has too are left out.

tracemalloc counts only Python's allocations, not the pages they land on, nor shared
libraries, threads or fragmentation: this says where the memory goes, ``steady_state.py``
what the RSS is. Two things would blur the table and are kept out: the interpreter's
table of interned strings, which grows in steps as modules load (grown before measuring),
and the thread that asks the node for ``/status`` (started before measuring). The
package is byte-compiled first, as an installed package is.

Then what prometheus-client would add, were the node to render ``/metrics`` with it (as
it did until the node wrote the text itself), is measured without tracemalloc, in a
process that has imported what the node had: import by import (what
``prometheus_client.exposition`` imports at its top, then the package), the package at
once, and the three submodules that rendering needs loaded without the package's
``__init__``, which the package does not support, to see what that would spare.

Writes ``benchmarks/results/import_cost.json``.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import machine, table, write_json

import almost_raft

# Records each module's own allocations. argv: "asyncio", or the cluster file and the
# HTTP port of a node to run; prints one dict (repr: the probe must not import json,
# which a node loads).
_PROBE = r"""
import os, signal, sys, threading, time
# The interpreter's table of interned strings grows in steps as modules load, and a step
# would be credited to whichever module was loading: grown here, before measuring, and
# kept grown (the strings stay, or the table would shrink again as it fills).
_grown = [sys.intern(f"_probe_{i}") for i in range(200_000)]
own, stack = {}, []

def ask(path):
    import socket
    with socket.socket() as sock:
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET " + path + b" HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer.startswith(b"HTTP/1.1 200")
        except OSError:
            return False

def measure():
    end = time.monotonic() + 60
    while not ask(b"/status") and time.monotonic() < end:
        time.sleep(0.05)
    before = dict(own)
    gone = [module for module in before if module not in sys.modules]
    ask(b"/metrics")
    scrape = {m: v for m, v in own.items() if m not in before}
    print(repr({"own": before, "gone": gone, "scrape": scrape}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

if sys.argv[1] != "asyncio":
    config, port = sys.argv[1], int(sys.argv[2])
    # Started before measuring, so that its own start-up counts nowhere.
    threading.Thread(target=measure, daemon=True).start()

import tracemalloc
tracemalloc.start()
import gc, importlib._bootstrap as bootstrap

load = bootstrap._load_unlocked

def recording(spec):
    # Collected before and after, so that garbage counts nowhere.
    gc.collect()
    stack.append(0)
    before = tracemalloc.get_traced_memory()[0]
    try:
        return load(spec)
    finally:
        gc.collect()
        total = tracemalloc.get_traced_memory()[0] - before
        nested = stack.pop()
        own[spec.name] = total - nested
        if stack:
            stack[-1] += total

bootstrap._load_unlocked = recording

if sys.argv[1] == "asyncio":
    import asyncio
    print(repr({"own": own}))
    sys.exit()

from almost_raft.cli._main import main
sys.exit(main(["run", "--config", config, "--id", "a", "--http", f"127.0.0.1:{port}"]))
"""


# The RSS prometheus-client would add to a node, import by import. argv[1]: the modules
# a node has loaded, comma-separated; argv[2:]: the imports to measure, in order.
# "stub:" before a list of prometheus_client submodules imports them without the
# package's __init__ (which the package does not support; measured to see what that
# would spare).
_RSS_PROBE = r"""
import gc, importlib, importlib.util, json, sys, types

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

for module in sys.argv[1].split(","):
    try:
        importlib.import_module(module)
    except ImportError:
        pass
gc.collect()
steps, previous = [], rss_kib()
for step in sys.argv[2:]:
    if step.startswith("stub:"):
        spec = importlib.util.find_spec("prometheus_client")
        stub = types.ModuleType("prometheus_client")
        stub.__path__ = spec.submodule_search_locations
        sys.modules["prometheus_client"] = stub
        names = step[len("stub:"):].split(",")
    else:
        names = [step]
    for name in names:
        importlib.import_module(name)
    gc.collect()
    now = rss_kib()
    steps.append([step, now - previous])
    previous = now
print(json.dumps(steps))
"""

#: The first scrape's imports, heaviest first: what prometheus_client.exposition imports at
#: its top, then the rest of the package.
SCRAPE_CHAIN = ("urllib.request", "http.server", "wsgiref.simple_server", "prometheus_client")
#: What the node needs of the package (generate_latest, CollectorRegistry, the metric
#: families), were it importable without the package's __init__.
STUB = "stub:prometheus_client.registry,prometheus_client.metrics_core,prometheus_client.exposition"


def _rss_steps(loaded: list[str], steps: tuple[str, ...]) -> list[list[Any]]:
    result = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, ",".join(loaded), *steps],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    steps_kib: list[list[Any]] = json.loads(result.stdout)
    return steps_kib


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _probe(*argv: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            # Printed with repr(): the probe must not import json, which a node loads.
            parsed: dict[str, Any] = ast.literal_eval(line)
            return parsed
    raise RuntimeError(f"the probe printed no result: {result.stderr[-2000:]}")


def measure() -> dict[str, Any]:
    """Each module's own allocations in a running node, and in the first scrape."""
    compileall.compile_dir(str(Path(almost_raft.__file__).parent), quiet=1)
    baseline = set(_probe("asyncio")["own"])
    with tempfile.TemporaryDirectory() as directory:
        a, http, b, c = _free_ports(4)
        config = Path(directory) / "cluster.toml"
        config.write_text(
            f'cluster = "imports"\nstate_dir = "{directory}/state"\n\n'
            f'[nodes.a]\naddress = "127.0.0.1:{a}"\n\n'
            f'[nodes.b]\naddress = "127.0.0.1:{b}"\n\n'
            f'[nodes.c]\naddress = "127.0.0.1:{c}"\n'
        )
        node = _probe(str(config), str(http))
    own = {module: size for module, size in node["own"].items() if module not in baseline}
    gone = set(node["gone"])
    loaded = [module for module in node["own"] if module not in gone]
    return {
        "node": {module: size for module, size in own.items() if module not in gone},
        "let_go": {module: size for module, size in own.items() if module in gone},
        "first_scrape": node["scrape"],
        "first_scrape_rss_kib": {
            "by_import": _rss_steps(loaded, SCRAPE_CHAIN),
            "without_the_package_init": _rss_steps(loaded, (STUB,)),
            "whole_package": _rss_steps(loaded, ("prometheus_client",)),
        },
    }


def _kib(size: int) -> float:
    return round(size / 1024, 1)


def _group(module: str) -> str:
    if module.startswith("almost_raft"):
        return "almost-raft"
    if module.split(".")[0] in sys.stdlib_module_names:
        return "standard library"
    return "other packages"


def _report(title: str, sizes: dict[str, int], top: int) -> None:
    groups: dict[str, int] = {}
    for module, size in sizes.items():
        groups[_group(module)] = groups.get(_group(module), 0) + size
    print(f"\n{title}: {len(sizes)} modules, {_kib(sum(sizes.values()))} KiB")
    print(table(("", "KiB"), [[group, _kib(size)] for group, size in sorted(groups.items())]))
    ranked = sorted(sizes.items(), key=lambda item: -item[1])[:top]
    print(table(("module", "own KiB"), [[module, _kib(size)] for module, size in ranked]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=30, help="modules listed (default 30)")
    args = parser.parse_args()
    results = measure()
    _report("a running node, beyond bare asyncio", results["node"], args.top)
    _report("imported by the node, then let go", results["let_go"], args.top)
    _report("its first /metrics scrape", results["first_scrape"], args.top)
    rss = results["first_scrape_rss_kib"]
    rows = [[name, f"{kib / 1024:.2f}"] for name, kib in rss["by_import"]]
    rows.append(["all of prometheus_client at once", f"{rss['whole_package'][0][1] / 1024:.2f}"])
    rows.append(
        [
            "its registry, metrics_core and exposition without its __init__",
            f"{rss['without_the_package_init'][0][1] / 1024:.2f}",
        ]
    )
    print("\nRSS prometheus-client would add to a process holding what a node imports")
    print(table(("import, in order", "MiB"), rows))
    print(f"wrote {write_json('import_cost', {'machine': machine(), **results})}")


if __name__ == "__main__":
    main()

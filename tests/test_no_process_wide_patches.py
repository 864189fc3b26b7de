"""No test patches a standard-library module that every thread of the test process reads.

Why: the gateway fixtures run real gateways in threads of the pytest process, alive for a module or
the whole session. `monkeypatch.setattr(worker_pool.time, "monotonic", fake)` patches the one `time`
module of the process, so a gateway's event loop read the fake clock, ran it out (StopIteration) and
died; five later tests timed out in their handshakes (a CI run). Code that needs a fake clock, a fake
/proc or a fake CPU count takes it as an argument (`CpuIdleMeter(clock=...)`, `Scaling(...)`).
"""

from __future__ import annotations

import ast
from pathlib import Path

from parley_testing.source_scan import parsed_sources, write_tree

THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parents[1]
SCANNED = ("tests", "parley_testing")
SHARED_MODULES = {"time", "os", "asyncio", "socket", "select", "selectors", "threading", "signal", "subprocess", "random", "sys"}


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound to a shared module (`import time as clock`: clock -> time)."""
    aliases = {name: name for name in SHARED_MODULES}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name.split(".")[-1] in SHARED_MODULES and alias.asname:
                    aliases[alias.asname] = alias.name.split(".")[-1]
    return aliases


def _patched_module(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """The shared module a patching call patches, if it patches one: `<anything>.setattr/delattr(target, ...)`
    (a MonkeyPatch under any name), `patch.object(target, ...)` and `patch("dotted.name")`."""
    func = call.func
    is_patch = isinstance(func, ast.Name) and func.id == "patch" or isinstance(func, ast.Attribute) and func.attr == "patch"
    is_setattr = isinstance(func, ast.Attribute) and func.attr in ("setattr", "delattr", "object")
    if not (call.args and (is_patch or is_setattr)):
        return None
    target = call.args[0]
    if isinstance(target, ast.Constant) and isinstance(target.value, str):  # "time.monotonic", "pkg.worker_pool.time.monotonic"
        parts = target.value.split(".")[:-1]
        return next((part for part in parts if part in SHARED_MODULES), None)
    if is_patch:
        return None
    if isinstance(target, ast.Name):
        return aliases.get(target.id)
    if isinstance(target, ast.Attribute):
        return target.attr if target.attr in SHARED_MODULES else None
    return None


def findings(root: Path) -> list[str]:
    """Every patch of a shared module, as "file:line module"."""
    found: list[str] = []
    for relative, tree in parsed_sources(root, SCANNED, skip=THIS_FILE):
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (module := _patched_module(node, aliases)):
                found.append(f"{relative}:{node.lineno} {module}")
    return found


def test_no_test_patches_a_module_every_thread_reads():
    assert findings(REPO) == [], "pass the fake in as an argument (a clock, a reader) instead of patching the module"


def test_the_check_sees_what_it_forbids(tmp_path):
    write_tree(tmp_path, {
        "tests/test_a.py": (
            "from unittest import mock\n"
            "from unittest.mock import patch\n"
            "import time as clock\n"
            "from parley_local.gateway import worker_pool as lr\n"
            "def test_x(monkeypatch):\n"
            "    monkeypatch.setattr(lr.time, 'monotonic', lambda: 0.0)\n"
            "    monkeypatch.setattr(clock, 'sleep', lambda s: None)\n"
            "    monkeypatch.setattr('os.cpu_count', lambda: 2)\n"
            "    monkeypatch.setattr('parley_local.gateway.worker_pool.time.monotonic', lambda: 0.0)\n"
            "    with pytest.MonkeyPatch.context() as mp:\n"
            "        mp.delattr(lr.asyncio, 'sleep')\n"
            "    with mock.patch('time.monotonic'), patch.object(lr.os, 'getloadavg'):\n"
            "        pass\n"
            "    monkeypatch.setattr(lr, 'BURST_WORKERS', 2)\n"  # a module of ours: not this check's business
            "    monkeypatch.setattr('parley_local.gateway.worker_pool.BURST_WORKERS', 2)\n"
            "    mock.patch('botocore.client.BaseClient._make_api_call')\n"
            "    setattr(lr.time, 'x', 1)\n"),  # not a patch
        "parley_testing/helper.py": (
            "class Faults:\n"
            "    def arm(self):\n"
            "        self._monkeypatch.setattr(self.signal, 'signal', None)\n"),
    })
    assert findings(tmp_path) == ["tests/test_a.py:6 time", "tests/test_a.py:7 time", "tests/test_a.py:8 os", "tests/test_a.py:9 time",
                                  "tests/test_a.py:11 asyncio", "tests/test_a.py:12 time", "tests/test_a.py:12 os",
                                  "parley_testing/helper.py:3 signal"]

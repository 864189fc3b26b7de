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

THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parents[1]
SCANNED = ("tests", "parley_testing")
SHARED_MODULES = {"time", "os", "asyncio", "socket", "select", "selectors", "threading", "signal", "subprocess", "random", "sys"}


def _patched_module(call: ast.Call) -> str | None:
    """The shared module a `monkeypatch.setattr`/`delattr` call patches, if it patches one."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr in ("setattr", "delattr") and call.args):
        return None
    if not (isinstance(func.value, ast.Name) and "monkeypatch" in func.value.id
            or isinstance(func.value, ast.Attribute) and "monkeypatch" in func.value.attr):
        return None
    target = call.args[0]
    if isinstance(target, ast.Constant) and isinstance(target.value, str):  # the "time.monotonic" form
        name = target.value.split(".")[0]
    elif isinstance(target, ast.Name):
        name = target.id
    elif isinstance(target, ast.Attribute):
        name = target.attr
    else:
        return None
    return name if name in SHARED_MODULES else None


def findings(root: Path) -> list[str]:
    """Every patch of a shared module, as "file:line module"."""
    found: list[str] = []
    for folder in SCANNED:
        for source in sorted((root / folder).rglob("*.py")):
            if source == THIS_FILE:
                continue
            relative = source.relative_to(root).as_posix()
            tree = ast.parse(source.read_text(encoding="utf-8"), relative)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and (module := _patched_module(node)):
                    found.append(f"{relative}:{node.lineno} {module}")
    return found


def test_no_test_patches_a_module_every_thread_reads():
    assert findings(REPO) == [], "pass the fake in as an argument (a clock, a reader) instead of patching the module"


def test_the_check_sees_what_it_forbids(tmp_path):
    for folder in SCANNED:
        (tmp_path / folder).mkdir()
    (tmp_path / "tests" / "test_a.py").write_text(
        "from parley_local.gateway import worker_pool as lr\n"
        "import time\n"
        "def test_x(monkeypatch):\n"
        "    monkeypatch.setattr(lr.time, 'monotonic', lambda: 0.0)\n"
        "    monkeypatch.setattr(time, 'sleep', lambda s: None)\n"
        "    monkeypatch.setattr('os.cpu_count', lambda: 2)\n"
        "    monkeypatch.setattr(lr, 'BURST_WORKERS', 2)\n"  # a module of ours: not this check's business
        "    setattr(lr.time, 'x', 1)\n"  # not a monkeypatch
    )
    (tmp_path / "parley_testing" / "helper.py").write_text(
        "class Faults:\n"
        "    def arm(self):\n"
        "        self._monkeypatch.setattr(self.asyncio, 'sleep', None)\n"
    )
    assert findings(tmp_path) == ["tests/test_a.py:4 time", "tests/test_a.py:5 time", "tests/test_a.py:6 os",
                                  "parley_testing/helper.py:3 asyncio"]

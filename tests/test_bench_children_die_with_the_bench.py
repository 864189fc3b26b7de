"""A benchmark killed by a signal takes the system it started with it (`dev_process.DIE_WITH_PARENT`).

Real processes: a stand-in benchmark starts a long sleep the way the benchmarks start a system
(its own session, the same `preexec_fn`), and is then killed with SIGKILL, which runs no `finally`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from parley_testing.bench_scripts import BENCHMARKS

BENCH = """
import subprocess, sys
from dev_process import DIE_WITH_PARENT  # run in benchmarks/: `-c` puts the working folder on the path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                         preexec_fn=DIE_WITH_PARENT if sys.argv[1] == "yes" else None)
print(child.pid, flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _started_child(die_with_parent: bool) -> tuple[subprocess.Popen[str], int]:
    bench = subprocess.Popen([sys.executable, "-c", BENCH, "yes" if die_with_parent else "no"], cwd=BENCHMARKS,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert bench.stdout is not None
    return bench, int(bench.stdout.readline())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("die_with_parent", [True, False], ids=["with-it", "without-it"])
def test_a_system_ends_when_its_benchmark_is_killed(die_with_parent: bool) -> None:
    bench, child = _started_child(die_with_parent)
    try:
        assert _alive(child)
        bench.kill()
        bench.wait(10)
        deadline = time.monotonic() + (5 if die_with_parent else 1)  # an orphan is given 1 s to show it runs on
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(child) is not die_with_parent  # without it, the orphan runs on: what the fix is for
    finally:
        if _alive(child):
            os.kill(child, 9)

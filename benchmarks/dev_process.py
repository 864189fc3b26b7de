"""A `parley dev` from a given checkout, in a session of its own, for the benchmarks that compare trees.

Why shared: `idle_bench.py` and `gateway_cpu_bench.py` both start one checkout's gateway after another
(a before/after pair alternated on one noisy machine), wait for its ready line and kill its whole tree.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from parley_local.ports import free_port

READY_TIMEOUT_S = 60.0
READY = re.compile(r"Ready on (ws://\S+)")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGKILL when the benchmark that started it ends.

    Why: a benchmark ended by a signal (a SIGTERM, a killed CI job) runs no `finally`, and left its
    system running: a gateway with its environments and DynamoDB Local, spending the next run's CPU.
    The gateway's own children end when it does (their pipes close)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


# Linux only; elsewhere a system outlives a benchmark killed by a signal, as before.
# The benchmarks start their systems from their main thread, whose end is what the kernel watches.
DIE_WITH_PARENT = _die_with_parent if sys.platform.startswith("linux") else None


@contextmanager
def running_dev(repo: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`parley dev --quiet` of `repo` (its own .venv, else this interpreter) on a free 127.0.0.1 port:
    (the process, its WebSocket URL). Everything it started is killed when the block ends."""
    python = repo / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "parley_local.cli", "dev", "--quiet",
           "--port", str(free_port()), "--stack-name", f"bench{os.getpid()}", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=DIE_WITH_PARENT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert proc.stdout is not None
        said: list[str] = []
        for line in proc.stdout:  # bounded: the process ends or prints its ready line
            if match := READY.search(line):
                break
            said.append(line)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{repo}: no ready line within {READY_TIMEOUT_S:.0f} s:\n" + "".join(said[-5:]))
        else:
            raise RuntimeError(f"{repo}: parley dev exited before it was ready (status {proc.wait()}):\n" + "".join(said[-5:]))
        # Its output is drained from here on: a gateway that filled the pipe would block.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc, match.group(1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

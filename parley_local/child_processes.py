"""Spawning the gateway's helper processes (Lambda workers, moto, DynamoDB Local) safely under Ctrl-C.

Why one place: every child the gateway starts must outlive the first Ctrl-C, because the gateway
still needs its functions and its database while it runs `$disconnect` for every open socket.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Spawn children with SIGINT and SIGTERM blocked.

    A terminal's Ctrl-C (and a service manager's SIGTERM) reaches the whole process group; the
    children (workers, moto) ignore both, because the gateway still needs them to run `$disconnect`
    for every socket, and they exit when the gateway closes their stdin. The blocked mask survives
    fork and exec, so a signal cannot kill a child while its interpreter starts, before it sets
    "ignore" itself (then it unblocks them). In this thread a signal is only delayed: pending, and
    delivered when the mask is restored. The spawn itself (Popen) is synchronous, so overlapping
    uses only need the last one out to unblock. Only the standard library's spawn keeps the mask:
    uvloop's empties it in the child (hence `gateway.environment_process`).
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [s for s in STOP_SIGNALS if s not in before])


def ignore_stop_signals() -> None:
    """In a child the gateway spawned: ignore SIGINT and SIGTERM for good (the gateway stops it by
    closing its stdin), then unblock them (`stop_signals_blocked` spawned it with both blocked)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))


def read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line the child writes on stdout (its "ready" report), waiting at most `timeout` seconds.

    Closes the pipe afterwards: children write nothing else there.
    """
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                line += chunk
    proc.stdout.close()
    return line


def stop_by_eof(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """EOF on the child's stdin makes it exit (it ignores signals); killed if it has not within `timeout` s."""
    if proc.returncode is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait(5)

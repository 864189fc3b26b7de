"""`parley dev` as a child process, the way a developer runs it in a terminal: start, wait for the
ready line, read its output, Ctrl-C it, make sure nothing it started outlives it.

Why one wrapper: the gateway suites, the browser suite and the benchmarks all drive the real
command; each wait is bounded, and its own process group lets a Ctrl-C reach its workers and
services as a terminal's would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TextIO

from .template import ROOT
from .waiting import wait_for

READY = re.compile(r"Ready on (ws://\S+)")
DYNAMODB = re.compile(r"^\s+DynamoDB:\s+(http://\S+)")


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (Linux /proc; zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


class DevProcess:
    """`python -m parley_local.cli dev ARGS` in its own process group; a thread collects its output.

    `log` (a text file) and `on_line` see every line as it arrives.
    """

    def __init__(self, args: Sequence[str], *, cwd: Path = ROOT, log: TextIO | None = None,
                 on_line: Callable[[str], object] | None = None, env: dict[str, str] | None = None):
        self.args = list(args)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parley_local.cli", "dev", *self.args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[str] = []
        self._log = log
        self._on_line = on_line
        self._seen = 0
        self.ws_url = ""
        self.dynamodb_endpoint = ""
        self.ready_s = 0.0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if self._on_line is not None:
                self._on_line(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_until(self, pattern: str | re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The first line after the last one read that matches; AssertionError if the process exits first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern

        def match() -> re.Match[str] | None:
            while self._seen < len(self.lines):
                m = regex.search(self.lines[self._seen])
                self._seen += 1
                if m:
                    return m
            if self.proc.poll() is not None and not self.reader.is_alive() and self._seen >= len(self.lines):
                raise AssertionError(f"parley dev exited ({self.proc.returncode}) before {regex.pattern!r}:\n" + "".join(self.lines[-40:]))
            return None

        return wait_for(match, timeout, 0.02, what=f"{regex.pattern!r} from parley dev")

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Wait for the ready line; returns the WebSocket URL (the DynamoDB endpoint is kept too)."""
        self.ws_url = self.read_until(READY, timeout).group(1)
        self.ready_s = time.monotonic() - self.started_at
        for line in self.lines:
            if found := DYNAMODB.match(line):
                self.dynamodb_endpoint = found.group(1)
        return self.ws_url

    def interrupt(self, whole_group: bool = True, sig: int = signal.SIGINT) -> None:
        """Ctrl-C: a terminal signals the whole foreground process group (workers and services too)."""
        try:
            if whole_group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the group, wait for the exit (bounded), kill what is left; returns the exit status (None: killed)."""
        if self.proc.poll() is None:
            self.interrupt(True, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.kill()
        return self.proc.returncode

    def output(self) -> str:
        self.reader.join(5)
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL the process and anything left in its group: nothing may outlive a test."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for pid in group_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

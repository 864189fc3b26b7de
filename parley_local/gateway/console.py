"""The gateway's console: one place that writes lines, so tests and the CLI can redirect it.

Why: the gateway prints one line per invocation plus the functions' own
output; all of it goes through `Console.line`, flushed, so that a developer
sees it live and a test can capture it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Console:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False, invocations: bool = True):
        self.stream = stream
        self.quiet = quiet
        self.invocations = invocations  # False: no per-invocation lines (`parley dev --quiet`)

    def line(self, text: str) -> None:
        if self.quiet:
            return
        out = self.stream or sys.stdout
        try:
            out.write(text + "\n")
            out.flush()
        except (ValueError, OSError):  # stream closed during shutdown
            pass

    def invocation(self, route: str, connection_id: str, duration_ms: float, status: str) -> None:
        """The one line logged per invocation: time, route, connection, duration, status."""
        if not self.invocations:
            return
        self.line(f"{time.strftime('%H:%M:%S')} {route:<14} {connection_id} {duration_ms:7.1f} ms  {status}")

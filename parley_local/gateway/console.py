"""The gateway's console: one place that writes lines, so tests and the CLI can redirect it.

Why: the gateway prints one line per invocation plus the functions' own
output; all of it goes through `Console.line`, so that a developer sees it live
and a test can capture it. Lines are flushed together FLUSH_AFTER_S after the
first one not yet flushed: a write per loop turn was two or three system calls
per handshake in a storm, about 6% of the gateway's CPU per handshake with the
default log (docs/benchmarks.md), and 20 ms is still live to a reader.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

FLUSH_AFTER_S = 0.02


class Console:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False, invocations: bool = True):
        self.stream = stream
        self.quiet = quiet
        self.invocations = invocations  # False: no per-invocation lines (`parley dev --quiet`)
        self._flush_scheduled = False

    def line(self, text: str) -> None:
        self._write(text + "\n")

    def log_lines(self, prefix: str, text: str) -> None:
        """Each line of `text` (lines joined by newlines, no newline at its end) behind `prefix`, in one write."""
        self._write(prefix + text.replace("\n", "\n" + prefix) + "\n")

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        out = self.stream or sys.stdout
        try:
            out.write(text)
        except (ValueError, OSError):  # stream closed during shutdown
            return
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (start-up, a thread): flush now
            self._flush(out)
            return
        self._flush_scheduled = True
        loop.call_later(FLUSH_AFTER_S, self._flush, out)

    def flush(self) -> None:
        """Write out what is buffered now: before an exit that skips the interpreter's own flush."""
        self._flush(self.stream or sys.stdout)

    def _flush(self, out: TextIO) -> None:
        self._flush_scheduled = False
        try:
            out.flush()
        except (ValueError, OSError):
            pass

    def invocation(self, route: str, connection_id: str, duration_ms: float, status: str, init_ms: float | None = None) -> None:
        """The one line logged per invocation: time, route, connection, duration, status, and a cold start's init time."""
        if not self.invocations:
            return
        cold = f"  (cold start, init {init_ms:.0f} ms)" if init_ms is not None else ""
        self.line(f"{time.strftime('%H:%M:%S')} {route:<14} {connection_id} {duration_ms:7.1f} ms  {status}{cold}")


class LogCopy:
    """Copies one function's log (its environment's stderr) to the console live, each line behind `prefix`.

    Why fed chunk by chunk and not a `readline` and a `line` per log line: a handshake storm's
    `$connect` logs a line per connection, and whatever the pipe holds when the loop gets to it is
    split in one go, its lines written in order, in one write, in the turn it is read (and flushed
    together at that turn's end). A line without its newline waits for the rest; one longer than
    `line_limit` bytes ends the copy (what follows is dropped), as `readline` over such a line did."""

    __slots__ = ("console", "prefix", "line_limit", "_partial", "ended")

    def __init__(self, console: Console, prefix: str, line_limit: int):
        self.console = console
        self.prefix = prefix
        self.line_limit = line_limit
        self._partial = b""
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        if self.ended:
            return
        if self._partial:
            chunk = self._partial + chunk
        end = chunk.rfind(b"\n")
        self._partial = chunk[end + 1:]
        if end >= 0:
            # Decoded as one text: UTF-8 resynchronizes at every newline byte, so this is each line's own decoding.
            self.console.log_lines(self.prefix, chunk[:end].decode("utf-8", "replace"))
        if len(self._partial) > self.line_limit:
            self._partial, self.ended = b"", True

    def end(self) -> None:
        """The log's end: its last line, if it had no newline, is written too."""
        if self._partial and not self.ended:
            self.console.line(self.prefix + self._partial.decode("utf-8", "replace"))
        self._partial, self.ended = b"", True

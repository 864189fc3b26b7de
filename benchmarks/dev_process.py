"""Reading a `parley dev` subprocess's start-up output, for the benchmarks that drive a gateway.

Kept apart from `benchmarks/common.py`, which sets the in-process benchmark environment on import.
"""

from __future__ import annotations

import re
import time
from typing import Callable, TextIO

_READY = re.compile(r"Ready on (ws://\S+)")
_DYNAMODB = re.compile(r"\s+DynamoDB:\s+(http://\S+)")


def read_until_ready(stdout: TextIO, timeout_s: float, on_line: Callable[[str], object]) -> tuple[str, str]:
    """Read lines until the ready line: returns (ws URL, DynamoDB endpoint).

    The URL is "" when `timeout_s` passed first; EOFError when the process exited first.
    Every line read is handed to `on_line` (a log).
    """
    started = time.monotonic()
    endpoint = ""
    while time.monotonic() - started < timeout_s:
        line = stdout.readline()
        if not line:
            raise EOFError("parley dev exited before it was ready")
        on_line(line)
        if found := _DYNAMODB.match(line):
            endpoint = found.group(1)
        if ready := _READY.match(line):
            return ready.group(1), endpoint
    return "", endpoint

"""The event loop the local gateway runs on: uvloop's (libuv, in C) on Linux and macOS.

Why: on a 2-core laptop the gateway shares the CPU with the client and the functions' environments, so
its own CPU per handshake bounds how many connections open per second. Measured with
`benchmarks/gateway_cpu_bench.py` (docs/benchmarks.md), asyncio's pure-Python loop and transports were
about 5% of the gateway's CPU per handshake and per `ping` more than uvloop's. Windows has no uvloop:
there the gateway runs on asyncio's loop, which behaves the same, only slower.

`parley dev` and the tests' gateway threads (`parley_testing.gateway_thread`) both start their loop
here, so the tests run the gateway on the loop that developers run.
"""

from __future__ import annotations

import asyncio
import sys


def new_event_loop() -> asyncio.AbstractEventLoop:
    if sys.platform == "win32":
        return asyncio.new_event_loop()
    import uvloop

    return uvloop.new_event_loop()

"""CPU of `parley dev`'s default log: one `Console.invocation` line, against `--quiet`, same run.

Each line is written to a pipe that another thread drains (as a terminal or `make dev`'s pipe
would), twice: flushed one line at a time (off an event loop), and as the gateway writes it, on a
running event loop whose console flushes its lines together FLUSH_AFTER_S after the first. The
figure is CPU time per line (process time, so other work on the machine does not count), to set
against a handshake's or a ping's CPU.

    .venv/bin/python benchmarks/log_line_bench.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time

from parley_local.gateway.console import Console


def cpu_per_line(console: Console, lines: int) -> float:
    started = time.process_time()
    for n in range(lines):
        console.invocation("$connect", f"conn{n:08d}=", 3.2, "200")
    return (time.process_time() - started) / lines


def cpu_per_line_on_loop(console: Console, lines: int) -> float:
    """As on the gateway's loop: lines written in turns of 50, the loop free between them for the flush timer."""
    async def run() -> float:
        started = time.process_time()
        for n in range(lines):
            console.invocation("$connect", f"conn{n:08d}=", 3.2, "200")
            if n % 50 == 49:
                await asyncio.sleep(0)
        return (time.process_time() - started) / lines
    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    read_end, write_end = os.pipe()
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read_end, 1 << 16), b"")], daemon=True)
    drain.start()
    with os.fdopen(write_end, "w") as stream:
        logged = min(cpu_per_line(Console(stream), args.lines) for _ in range(3))
        quiet = min(cpu_per_line(Console(stream, invocations=False), args.lines) for _ in range(3))
        on_loop = min(cpu_per_line_on_loop(Console(stream), args.lines) for _ in range(3))
        on_loop_quiet = min(cpu_per_line_on_loop(Console(stream, invocations=False), args.lines) for _ in range(3))
    drain.join(timeout=5)
    print(f"{args.lines:,} invocation lines, best of 3: {logged * 1e6:.2f} us of CPU per line logged, "
          f"{quiet * 1e6:.2f} us with --quiet; the line itself costs {(logged - quiet) * 1e6:.2f} us")
    print(f"on an event loop (flushed together): {on_loop * 1e6:.2f} us per line logged, {on_loop_quiet * 1e6:.2f} us with "
          f"--quiet; the line itself costs {(on_loop - on_loop_quiet) * 1e6:.2f} us")


if __name__ == "__main__":
    main()

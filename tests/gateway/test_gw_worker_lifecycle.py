"""An execution environment's pipes: replies come back on the gateway's own pipe, and nothing is left open.

Why: workers answer on a pipe the gateway creates and reads with a plain StreamReader (not the
subprocess transport's, which costs an event-loop turn per reply). That pipe must carry the
ready line, every reply and the timeout kill exactly as before, and be closed with the
environment, whether it is stopped, killed on its timeout or fails its init: a laptop session
starts and reaps many environments.
"""

from __future__ import annotations

import os
from pathlib import Path

from parley_local.gateway.console import Console
from parley_local.gateway.template import FunctionSpec
from parley_local.gateway.worker_pool import Worker, function_environment

HANDLER = '''
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"echo": event, "request": context.aws_request_id}
'''


def _spec(tmp_path: Path, source: str, timeout_s: float = 5.0) -> FunctionSpec:
    (tmp_path / "app.py").write_text(source)
    return FunctionSpec("EchoFunction", "stack-EchoFunction", "arn:aws:lambda:us-east-1:123456789012:function:stack-EchoFunction",
                        tmp_path, "app.handler", "python3.13", timeout_s, 128, {}, [])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_replies_arrive_and_a_stopped_environment_leaves_no_pipe_open(tmp_path: Path):
    spec = _spec(tmp_path, HANDLER)
    before = _open_fds()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    assert worker.init_error is None
    for i in range(3):
        inv = await worker.invoke({"n": i}, f"req-{i}", spec.timeout_s)
        assert inv.ok and inv.result == {"echo": {"n": i}, "request": f"req-{i}"}
    await worker.stop()
    assert worker.proc.returncode == 0
    assert _open_fds() == before


async def test_an_environment_killed_on_its_timeout_leaves_no_pipe_open(tmp_path: Path):
    spec = _spec(tmp_path, HANDLER, timeout_s=0.5)
    before = _open_fds()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    inv = await worker.invoke({"sleep": 5}, "req-slow", spec.timeout_s)
    assert inv.timed_out and inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout"
    assert not worker.alive
    await worker.stop()
    assert _open_fds() == before


async def test_an_init_failure_is_read_from_the_pipe_and_leaves_no_pipe_open(tmp_path: Path):
    spec = _spec(tmp_path, "def handler(event, context):\n    return (\n")
    before = _open_fds()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    assert worker.init_error is not None and worker.init_error["errorType"] == "Runtime.UserCodeSyntaxError"
    inv = await worker.invoke({}, "req-x", spec.timeout_s)
    assert inv.error == worker.init_error
    await worker.stop()
    assert _open_fds() == before


LOUD_HANDLER = '''
import sys

def handler(event, context):
    print("x" * event["chars"], file=sys.stderr)  # one log line longer than a pipe's buffer
    return {"ok": True}
'''


async def test_a_log_line_longer_than_the_pipe_buffer_is_forwarded_and_the_environment_keeps_serving(tmp_path: Path):
    """A handler that logs a large event in one line: the gateway must keep reading its log, else the
    pipe fills and the handler blocks on its next line (its invocations then hang until their timeout)."""
    import asyncio
    import io

    spec = _spec(tmp_path, LOUD_HANDLER, timeout_s=5.0)
    out = io.StringIO()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(stream=out))
    try:
        for i in range(3):  # 300 KB of log in all: far past the 64 KiB a pipe buffers
            inv = await asyncio.wait_for(worker.invoke({"chars": 100_000}, f"req-{i}", spec.timeout_s), 4)
            assert inv.ok, inv.error
        for _ in range(100):
            if out.getvalue().count("x" * 100_000) == 3:
                break
            await asyncio.sleep(0.02)
        assert out.getvalue().count("[EchoFunction] " + "x" * 100_000) == 3
    finally:
        await worker.stop()

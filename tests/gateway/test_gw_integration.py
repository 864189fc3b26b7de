"""The integration between a route and its function: eager start, the outcome handed over, the 29 s rule.

A fake runtime stands in for the worker pool in the first tests: what they test is the gateway's
own plumbing: when the invocation starts, what the caller gets, and that an invocation outliving
the integration timeout is still tracked until it ends. The last ones run the real pool and real
environments: an invocation that outlives its caller's wait keeps its environment busy until its
reply, then that environment serves the next one; one whose environment dies gets
`Runtime.ExitError` and the pool starts another.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from parley_local.gateway.console import Console
from parley_local.gateway.integration import BackgroundTasks, Integration
from parley_local.gateway.template import FunctionSpec
from parley_local.gateway.environment import Invocation
from parley_local.gateway.worker_pool import Call, LambdaRuntime


class _Runtime:
    """Runs each invocation for `seconds` (or until `gate` is set) on one environment, served at once
    (or after `queued_s`); its calls are the pool's own `Call`s, finished as a worker's reply reader does."""

    def __init__(self, seconds: float = 0.0, queued_s: float = 0.0, fail: Exception | None = None,
                 gate: asyncio.Event | None = None):
        self.seconds, self.queued_s, self.fail, self.gate = seconds, queued_s, fail, gate
        self.events: list[Any] = []
        self.finished: list[Any] = []
        self._runs: set[asyncio.Task[None]] = set()

    def begin(self, function: str, event: Any, request_id: str | None = None) -> Call:
        loop = asyncio.get_running_loop()
        call = Call(loop, request_id or "req")
        if self.queued_s:
            call.queued = loop.create_future()
            loop.call_later(self.queued_s, self._serve, call, event)
        else:
            self._serve(call, event)
        return call

    def _serve(self, call: Call, event: Any) -> None:
        call.start(asyncio.get_running_loop().time())
        self.events.append(event)
        if self.fail is not None:
            call.fail(self.fail)
            return
        run = asyncio.ensure_future(self._run(call, event))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    async def _run(self, call: Call, event: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.seconds)
        self.finished.append(event)
        call.finish(Invocation(call.request_id, result={"echo": event}))


async def test_the_invocation_starts_before_the_caller_first_waits():
    runtime = _Runtime(seconds=0.01)
    integration = Integration(runtime, BackgroundTasks(), timeout_s=5)  # type: ignore[arg-type]
    call = integration.invoke("Fn", {"n": 1}, None)
    waiting = asyncio.ensure_future(call)
    await asyncio.sleep(0)  # one step of the caller: the event must already be with the runtime
    assert runtime.events == [{"n": 1}]
    assert (await waiting).result == {"echo": {"n": 1}}


async def test_a_timed_out_invocation_answers_at_the_timeout_and_runs_on_tracked():
    gate = asyncio.Event()  # the function runs until the test lets it end: the answer cannot wait for it
    runtime = _Runtime(gate=gate)
    tasks = BackgroundTasks()
    integration = Integration(runtime, tasks, timeout_s=0.1)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    t = loop.time()
    inv = await asyncio.wait_for(integration.invoke("Fn", {"n": 2}, None), 10)
    assert inv.timed_out and inv.error == {"errorMessage": "Endpoint request timed out", "errorType": "IntegrationTimeout"}
    assert loop.time() - t >= 0.09
    assert runtime.finished == [] and len(tasks.tasks) == 1  # the function runs on, and shutdown would wait for it
    gate.set()
    await tasks.wait(timeout=2)
    assert runtime.finished == [{"n": 2}] and not tasks.tasks  # done: it left the set as it ended


async def test_the_wait_for_an_environment_is_not_counted():
    runtime = _Runtime(queued_s=0.3)  # waits twice the timeout for an environment, then answers at once
    integration = Integration(runtime, BackgroundTasks(), timeout_s=0.15)  # type: ignore[arg-type]
    inv = await integration.invoke("Fn", {"n": 3}, None)
    assert inv.ok and inv.result == {"echo": {"n": 3}}


async def test_a_runtime_failure_reaches_the_caller():
    runtime = _Runtime(fail=RuntimeError("boom"))
    integration = Integration(runtime, BackgroundTasks(), timeout_s=1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="boom"):
        await integration.invoke("Fn", {}, None)


async def test_tracked_tasks_leave_their_sets_as_they_end():
    tasks, owner = BackgroundTasks(), set()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    task = tasks.spawn(work(), owner, eager=True)
    assert task in tasks.tasks and task in owner
    gate.set()
    assert await task == "done"
    assert not tasks.tasks and not owner

    async def at_once() -> int:
        return 7

    quick = tasks.spawn(at_once(), owner, eager=True)  # finished without waiting: nothing to track
    assert quick.done() and quick.result() == 7 and not tasks.tasks and not owner


async def test_a_task_cancelled_before_its_first_step_leaves_its_sets_too():
    tasks, owner = BackgroundTasks(), set()

    async def never_started() -> None:
        raise AssertionError("not reached")

    task = tasks.spawn(never_started(), owner)
    task.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert task.cancelled() and not tasks.tasks and not owner


# -- the real pool and real environments ---------------------------------------------------

HANDLER = '''
import os
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(event["exit"])
    if event.get("mark"):
        with open(event["mark"], "w") as f:
            f.write("ran to its end")
    return {"pid": os.getpid()}
'''


def _runtime(tmp_path: Path, timeout_s: float = 5.0) -> LambdaRuntime:
    (tmp_path / "app.py").write_text(HANDLER)
    spec = FunctionSpec("Fn", "stack-Fn", "arn:aws:lambda:us-east-1:123456789012:function:stack-Fn",
                        tmp_path, "app.handler", "python3.13", timeout_s, 128, {}, [])
    return LambdaRuntime({"Fn": spec}, {}, Console(quiet=True), idle_timeout_s=0)


async def test_an_invocation_outliving_its_integration_timeout_runs_to_its_end_then_its_environment_serves_on(tmp_path: Path):
    runtime, tasks = _runtime(tmp_path), BackgroundTasks()
    integration = Integration(runtime, tasks, timeout_s=0.3)
    mark = tmp_path / "mark"
    try:
        await runtime.prewarm()
        pid = (await integration.invoke("Fn", {}, None)).result["pid"]
        inv = await integration.invoke("Fn", {"sleep": 1.0, "mark": str(mark)}, None)
        assert inv.timed_out and inv.error is not None and inv.error["errorType"] == "IntegrationTimeout"
        pool = runtime.pools["Fn"]
        assert not pool.idle and len(tasks.tasks) == 1 and not mark.exists()  # still running; shutdown waits for it
        await tasks.wait(timeout=5)
        assert not tasks.tasks and mark.read_text() == "ran to its end"
        assert pool.idle and len(pool.workers) == 1  # released when its reply came
        again = await integration.invoke("Fn", {}, None)
        assert again.ok and again.result["pid"] == pid and again.init_ms is None
    finally:
        await runtime.close()


@pytest.mark.parametrize("event, error_type, message", [
    ({"exit": 3}, "Runtime.ExitError", "exit status 3"),
    ({"sleep": 5}, "Sandbox.Timedout", "Task timed out after 0.50 seconds"),
])
async def test_an_environment_that_dies_mid_invocation_fails_it_and_the_pool_starts_another(
        tmp_path: Path, event: dict[str, Any], error_type: str, message: str):
    runtime = _runtime(tmp_path, timeout_s=0.5)
    integration = Integration(runtime, BackgroundTasks(), timeout_s=5)
    try:
        await runtime.prewarm()
        pid = (await integration.invoke("Fn", {}, None)).result["pid"]
        inv = await asyncio.wait_for(integration.invoke("Fn", event, None), 10)
        assert inv.error is not None and inv.error["errorType"] == error_type and message in inv.error["errorMessage"]
        assert not runtime.pools["Fn"].workers  # the dead environment left the pool
        again = await asyncio.wait_for(integration.invoke("Fn", {}, None), 30)
        assert again.ok and again.result["pid"] != pid and again.init_ms is not None  # a cold start, reported
    finally:
        await runtime.close()


async def test_an_environment_that_dies_while_idle_is_not_handed_an_invocation(tmp_path: Path):
    """Its reply pipe's end is read as it comes, so the pool knows before the next invocation: that one
    cold-starts a new environment instead of failing with `Runtime.ExitError` on the dead one."""
    runtime = _runtime(tmp_path)
    integration = Integration(runtime, BackgroundTasks(), timeout_s=5)
    try:
        await runtime.prewarm()
        pool = runtime.pools["Fn"]
        (dead,) = pool.workers
        dead.proc.kill()
        await dead.proc.wait()
        for _ in range(100):  # the pipe's end is a loop turn or two behind the exit
            if not dead.alive:
                break
            await asyncio.sleep(0.01)
        assert not dead.alive
        inv = await asyncio.wait_for(integration.invoke("Fn", {}, None), 30)
        assert inv.ok and inv.result["pid"] != dead.proc.pid and inv.init_ms is not None
    finally:
        await runtime.close()

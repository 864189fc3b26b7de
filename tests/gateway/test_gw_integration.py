"""The integration between a route and its function: eager start, the outcome handed over, the 29 s rule.

A fake runtime stands in for the worker pool (the real pool is driven over real sockets in
test_gw_websocket.py); what is tested here is the gateway's own plumbing: when the invocation
starts, what the caller gets, and that an invocation outliving the integration timeout is still
tracked until it ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from parley_local.gateway.integration import BackgroundTasks, Integration
from parley_local.gateway.worker_pool import Invocation


class _Runtime:
    """Runs each invocation for `seconds` (or until `gate` is set) on one environment, served at once
    (or after `queued_s`)."""

    def __init__(self, seconds: float = 0.0, queued_s: float = 0.0, fail: Exception | None = None,
                 gate: asyncio.Event | None = None):
        self.seconds, self.queued_s, self.fail, self.gate = seconds, queued_s, fail, gate
        self.events: list[Any] = []
        self.finished: list[Any] = []

    async def invoke(self, function: str, event: Any, request_id: str | None = None, on_start: Any = None) -> Invocation:
        if self.queued_s:
            await asyncio.sleep(self.queued_s)
        on_start(asyncio.get_running_loop().time())
        self.events.append(event)
        if self.fail is not None:
            raise self.fail
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.seconds)
        self.finished.append(event)
        return Invocation("req", result={"echo": event})


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

"""The Lambda proxy integration between a route and its function: the 29 s wait, and background tasks.

Why apart from the session: the handshake (authorizer, `$connect`), every MESSAGE route and
`$disconnect` invoke the same way; API Gateway stops waiting at the integration timeout while
the function runs on to its own timeout, so an invocation its caller stopped waiting for is still
one that shutdown waits for.

When the timeout starts: on AWS a burst of invocations (1,000 clients joining a room at once)
gets one execution environment each, so each answers in its own run time (its cold start
included). Locally the pool runs a few environments on the laptop's cores and the rest wait for
one to be free. That wait is the laptop's, not the function's: counting it against the 29 s made
a join storm end in "Endpoint request timed out" for handlers that each ran in milliseconds,
which AWS would never answer. So the timeout counts from when an environment began to serve the
invocation (its cold start, if one was started for it); the wait before it is reported on the
console, so a developer sees that the local machine, not the handler, was the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Coroutine

from .template import RouteSpec
from .environment import Invocation, WorkerDied
from .worker_pool import Call, LambdaRuntime, unavailable

DEFAULT_INTEGRATION_TIMEOUT_MS = 29_000
QUEUE_NOTE_S = 1.0  # a wait for a busy environment longer than this is reported on the console
QUEUE_REPORT_EVERY_S = 5.0  # at most one such line per function per this many seconds


class BackgroundTasks:
    """Tasks the gateway started, and invocations nobody waits for, that it must let finish (or wait for) before it stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Future[Any]] = set()

    def track(self, fut: asyncio.Future[Any]) -> None:
        """Wait for `fut` too at shutdown (it leaves the set when done)."""
        if not fut.done():
            self.tasks.add(fut)
            fut.add_done_callback(self.tasks.discard)

    def spawn(self, coro: Coroutine[Any, Any, Any], owner: set[asyncio.Task[Any]] | None = None,
              eager: bool = False) -> asyncio.Task[Any]:
        """Run `coro` as a tracked task; `owner` (e.g. a connection's task set) tracks it too.

        `eager`: the coroutine runs now, up to its first real wait (Python's eager task start), instead of
        in a later turn of the event loop. A frame's invocation then reaches the worker's pipe in the turn
        that read the frame. The task leaves the sets as it ends (not from a done callback, which would
        take one more turn). Every turn saved is an epoll call and a scheduling pass per frame."""
        sets = (self.tasks,) if owner is None else (self.tasks, owner)
        task = asyncio.Task(_tracked(coro, sets), loop=asyncio.get_running_loop(), eager_start=eager)
        if task.done():  # an eager coroutine that finished without waiting left nothing to track
            return task
        for s in sets:
            s.add(task)
        if not eager:  # a task cancelled before its first step never runs `_tracked` (nor `coro`)
            def never_started(done: asyncio.Task[Any]) -> None:
                coro.close()  # a no-op once it ran; else no "never awaited" warning
                for s in sets:
                    s.discard(done)

            task.add_done_callback(never_started)
        return task

    async def wait(self, timeout: float) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


async def _tracked(coro: Coroutine[Any, Any, Any], sets: tuple[set[Any], ...]) -> Any:
    try:
        return await coro
    finally:
        task = asyncio.current_task()
        for s in sets:
            s.discard(task)  # type: ignore[arg-type]


class Integration:
    """Invoke a route's function; the caller waits at most the integration timeout."""

    def __init__(self, runtime: LambdaRuntime, tasks: BackgroundTasks, timeout_s: float | None = None):
        self.runtime = runtime
        self.tasks = tasks
        self.timeout_s = timeout_s  # None: the route's own (29 s at most)
        self._queued: dict[str, _QueueWaits] = {}

    async def invoke(self, function: str, event: dict[str, Any], route: RouteSpec | None) -> Invocation:
        """The invocation's outcome, or `Endpoint request timed out` once the timeout has passed since an
        environment began to serve it; the invocation itself runs on (shutdown waits for it), as on AWS.

        Why one future and a timer: with a warm environment idle, the event is on its pipe before this
        first waits, and the reply reader resolves the call's outcome in the loop turn it reads the
        reply (`worker_pool.Call`): no task, no `asyncio.wait`, no turn in between."""
        limit = self.timeout_s
        if limit is None:
            limit = (route.integration_timeout_ms if route else DEFAULT_INTEGRATION_TIMEOUT_MS) / 1000
        call = self.runtime.begin(function, event)
        outcome = call.outcome
        if not outcome.done():
            try:
                if call.started_at is None:  # the wait for an environment: not counted
                    assert call.queued is not None
                    await call.queued
                if not outcome.done():
                    timer = self._arm_timeout(call, function, limit)
                    try:
                        await outcome
                    except WorkerDied:
                        pass  # answered below
                    finally:
                        if timer is not None:
                            timer.cancel()
            except asyncio.CancelledError:
                self._track(call)  # the caller is gone; the function runs on
                raise
        try:
            return outcome.result()
        except WorkerDied as exc:
            return unavailable(call.request_id, exc)

    def _arm_timeout(self, call: Call, function: str, limit: float) -> asyncio.TimerHandle | None:
        """The integration timeout, `limit` after the call's environment began to serve it; None when the
        function's own timeout ends it sooner (a warm invocation of a function whose Timeout is under the
        integration's: Parley's 28 s against 29 s), which spares a timer per invocation."""
        assert call.started_at is not None
        if call.started_at - call.arrived >= QUEUE_NOTE_S:
            self._note_wait(function, call.started_at - call.arrived)
        deadline = call.started_at + limit
        if call.ends_by < deadline:
            return None
        return asyncio.get_running_loop().call_at(deadline, self._expire, call)

    def _expire(self, call: Call) -> None:
        if call.outcome.done():
            return
        call.outcome.set_result(Invocation(  # the function keeps running to its own timeout, as on AWS
            call.request_id, error={"errorMessage": "Endpoint request timed out", "errorType": "IntegrationTimeout"},
            duration_ms=(time.perf_counter() - call.perf_started) * 1000, timed_out=True,
        ))
        self._track(call)

    def _track(self, call: Call) -> None:
        """An invocation its caller no longer waits for: shutdown (`BackgroundTasks.wait`) still waits for it."""
        if not call.finished:
            self.tasks.track(call.until_ended())

    def _note_wait(self, function: str, waited_s: float) -> None:
        if waited_s < QUEUE_NOTE_S:
            return
        waits = self._queued.setdefault(function, _QueueWaits())
        waits.count += 1
        waits.longest_s = max(waits.longest_s, waited_s)
        now = time.monotonic()
        if now - waits.reported_at < QUEUE_REPORT_EVERY_S:
            return
        pool = self.runtime.pools.get(function)
        running = pool.total if pool is not None else 0
        self.runtime.console.line(
            f"[{function}] {waits.count} invocation(s) waited up to {waits.longest_s:.1f} s for one of its {running} local "
            "execution environment(s) to be free (on AWS each would get its own): this machine, not the handler, is the "
            "bottleneck; the integration timeout counts from the start of each run")
        self._queued[function] = _QueueWaits(reported_at=now)


@dataclass
class _QueueWaits:
    """Invocations of one function that waited long for an environment, since the last console line."""

    count: int = 0
    longest_s: float = 0.0
    reported_at: float = float("-inf")


def status_text(inv: Invocation) -> str:
    """The outcome as the console's invocation line shows it: `200`, `ok`, `timeout`, `error <type>`."""
    if inv.timed_out:
        return "timeout"
    if inv.error is not None:
        return f"error {inv.error.get('errorType', '')}".rstrip()
    if isinstance(inv.result, dict) and "statusCode" in inv.result:
        return str(inv.result["statusCode"])
    return "ok"

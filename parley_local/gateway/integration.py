"""The Lambda proxy integration between a route and its function: the 29 s wait, and background tasks.

Why apart from the session: the handshake (authorizer, `$connect`), every MESSAGE route and
`$disconnect` invoke the same way; API Gateway stops waiting at the integration timeout while
the function runs on to its own timeout, so the invocation is a task of its own that shutdown
still waits for.

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

from .ids import uuid4_str
from .template import RouteSpec
from .worker_pool import Invocation, LambdaRuntime

DEFAULT_INTEGRATION_TIMEOUT_MS = 29_000
QUEUE_NOTE_S = 1.0  # a wait for a busy environment longer than this is reported on the console
QUEUE_REPORT_EVERY_S = 5.0  # at most one such line per function per this many seconds


class BackgroundTasks:
    """Tasks the gateway started and must let finish (or wait for) before it stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

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


async def _tracked(coro: Coroutine[Any, Any, Any], sets: tuple[set[asyncio.Task[Any]], ...]) -> Any:
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
        environment began to serve it; the invocation itself runs on (a tracked task), as on AWS.

        Why futures and a timer, not `asyncio.wait` and `wait_for(shield(...))`: the outcome is handed to
        the waiting frame in the loop turn the worker's reply is read, not three turns later (each turn
        an epoll call and a pass over the ready callbacks; ~11 turns per frame before, profiled)."""
        limit = self.timeout_s
        if limit is None:
            limit = (route.integration_timeout_ms if route else DEFAULT_INTEGRATION_TIMEOUT_MS) / 1000
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        began: asyncio.Future[float] = loop.create_future()
        outcome: asyncio.Future[Invocation] = loop.create_future()

        def on_start(at: float) -> None:
            if not began.done():
                began.set_result(at)

        async def run() -> None:
            try:
                inv = await self.runtime.invoke(function, event, on_start=on_start)
            except Exception as exc:
                if outcome.done():  # nobody waits for it any more: let asyncio report it
                    raise
                outcome.set_exception(exc)  # the caller raises it, as it did awaiting the task
                return
            if not outcome.done():  # else: timed out (or the frame's task was cancelled) already
                outcome.set_result(inv)

        started = time.perf_counter()
        self.tasks.spawn(run(), eager=True)  # with a warm environment free, the event is on its pipe now
        if not began.done() and not outcome.done():  # the wait for an environment: not counted
            await asyncio.wait([outcome, began], return_when=asyncio.FIRST_COMPLETED)
        if outcome.done():
            return outcome.result()
        start = max(arrived, began.result())
        self._note_wait(function, start - arrived)

        def expire() -> None:
            if not outcome.done():  # the function keeps running to its own timeout, as on AWS
                outcome.set_result(Invocation(
                    uuid4_str(), error={"errorMessage": "Endpoint request timed out", "errorType": "IntegrationTimeout"},
                    duration_ms=(time.perf_counter() - started) * 1000, timed_out=True,
                ))

        timer = loop.call_at(start + limit, expire)
        try:
            return await outcome
        finally:
            timer.cancel()

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

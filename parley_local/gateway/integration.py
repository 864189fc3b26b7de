"""The Lambda proxy integration between a route and its function: the 29 s wait, and background tasks.

Why apart from the session: the handshake (authorizer, `$connect`), every MESSAGE route and
`$disconnect` invoke the same way; API Gateway stops waiting at the integration timeout while
the function runs on to its own timeout, so the invocation is a task of its own that shutdown
still waits for.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Awaitable

from .template import RouteSpec
from .worker_pool import Invocation, LambdaRuntime

DEFAULT_INTEGRATION_TIMEOUT_MS = 29_000


class BackgroundTasks:
    """Tasks the gateway started and must let finish (or wait for) before it stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any], owner: set[asyncio.Task[Any]] | None = None) -> asyncio.Task[Any]:
        """Run `coro` as a tracked task; `owner` (e.g. a connection's task set) tracks it too."""
        task = asyncio.ensure_future(coro)
        for s in (self.tasks, owner):
            if s is not None:
                s.add(task)
                task.add_done_callback(s.discard)
        return task

    async def wait(self, timeout: float) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


class Integration:
    """Invoke a route's function; the caller waits at most the integration timeout."""

    def __init__(self, runtime: LambdaRuntime, tasks: BackgroundTasks, timeout_s: float | None = None):
        self.runtime = runtime
        self.tasks = tasks
        self.timeout_s = timeout_s  # None: the route's own (29 s at most)

    async def invoke(self, function: str, event: dict[str, Any], route: RouteSpec | None) -> Invocation:
        limit = self.timeout_s
        if limit is None:
            limit = (route.integration_timeout_ms if route else DEFAULT_INTEGRATION_TIMEOUT_MS) / 1000
        task = self.tasks.spawn(self.runtime.invoke(function, event))
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except asyncio.TimeoutError:
            # The function keeps running to its own timeout, as on AWS.
            return Invocation(
                str(uuid.uuid4()), error={"errorMessage": "Endpoint request timed out", "errorType": "IntegrationTimeout"},
                duration_ms=(time.perf_counter() - started) * 1000, timed_out=True,
            )


def status_text(inv: Invocation) -> str:
    """The outcome as the console's invocation line shows it: `200`, `ok`, `timeout`, `error <type>`."""
    if inv.timed_out:
        return "timeout"
    if inv.error is not None:
        return f"error {inv.error.get('errorType', '')}".rstrip()
    if isinstance(inv.result, dict) and "statusCode" in inv.result:
        return str(inv.result["statusCode"])
    return "ok"

"""The Lambda worker pool: run the template's functions the way Lambda does: warm environments (`environment.Worker`),
one invocation each at a time, more under concurrency, idle ones reaped.

An environment is reused while warm; when every environment of a function is busy, an invocation
waits for the first of (an environment freed, a new one started), so a slow handler never blocks the
others, and bursts of short invocations are not each charged a cold start on a 2-core laptop.

When to cold-start another worker (each costs ~0.5 s of CPU: boto3, pydantic,
powertools imports): an invocation that has waited COLD_START_DELAY_S gets one
while the function has fewer than BURST_WORKERS (the number of CPUs, at least
2); beyond that, one start at a time, and only while the machine has a CPU to
spare (half a CPU idle over the last second) and either the pool is stuck (no
invocation finished during the last STUCK_S: slow or I/O-bound handlers) or the
invocation has waited SCALE_OUT_WAIT_S. Without a spare CPU a new worker only adds
its import to a queue that is waiting for CPU, not for workers: opening 500
connections at once cold-started ~10 more `$connect` and authorizer workers, whose
imports cost as much CPU as the 500 handshakes themselves; and a join storm on moto
(one busy process) looked "stuck" to the pool, which grew JoinRoom to 25-32
environments that only added contention (issue 15).

A wait counts only once the function has an environment serving, and from when the
last one became ready: a connection burst's first handshakes all wait for the
authorizer's and `$connect`'s first cold starts, and counting that wait started a
second import of each in parallel (0.4-1 s of CPU each, shared by the burst's 1,000
handshakes). Nor does a wait start one while the function's environments have been
waiting for a CPU longer than running on one (`CpuWaitMeter`): then the machine, not
the environment, is the bottleneck. A room's fan-out (ten shards at once on one
environment that mostly waits for the gateway's answers) does get its second.

When the gateway stops, `LambdaRuntime.stop_starting` drains the pools that shutdown
does not need: no environment starts for them any more, and invocations still waiting
for one are not run (their sockets are closing), so Ctrl-C after a storm does not keep
a queue of hundreds of handlers running against the `$disconnect`s.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable

from .console import Console
from .cpu_meters import CpuWaitMeter, cpu_to_spare
from .environment import Invocation, PostHandler, Worker, WorkerDied, function_environment
from .ids import uuid4_str
from .template import FunctionSpec

COLD_START_DELAY_S = 0.1  # how long an invocation waits for a busy warm worker before a cold start begins
STUCK_S = 0.25  # no invocation finished for this long while one waits: the pool is stuck (slow handlers)
SCALE_OUT_WAIT_S = 1.0  # a wait this long gets a new worker even while the pool is making progress
PREINIT_DELAY_S = 1.0  # a proactive initialization waits this long, then until a CPU is spare ...
PREINIT_ATTEMPTS = 5  # ... looking once a PREINIT_DELAY_S, this many times at most
BURST_WORKERS = max(2, os.cpu_count() or 2)  # workers per function started for any wait over COLD_START_DELAY_S


def unavailable(request_id: str, exc: WorkerDied) -> Invocation:
    """The outcome of an invocation no environment could run (none could start, or the gateway is stopping)."""
    return Invocation(request_id, error={"errorMessage": str(exc), "errorType": "Runtime.Unavailable"})


class Call:
    """One invocation on its way: `outcome` is resolved in the loop turn its environment's reply is read.

    Why no task per invocation: a task, its coroutine frames (runtime, pool, worker, a `wait_for`
    and a `readline`) and the extra loop turn that wakes the task before it wakes its caller were
    most of the gateway's own CPU per invocation (issue 15: ~160 µs against a bare echo's ~50).
    Now the worker's reply reader finishes the invocation from its callback (the pool's bookkeeping,
    the environment released) and the caller awaits this one future. A caller that stops waiting
    (the integration timeout, a cancelled frame) leaves the invocation running, as on AWS:
    `ended` then tells shutdown when it is over.
    """

    __slots__ = ("request_id", "outcome", "arrived", "perf_started", "started_at", "ends_by", "queued", "ended", "finished",
                 "cold")

    def __init__(self, loop: asyncio.AbstractEventLoop, request_id: str) -> None:
        self.request_id = request_id
        self.outcome: asyncio.Future[Invocation] = loop.create_future()
        self.arrived = loop.time()
        self.perf_started = time.perf_counter()
        self.started_at: float | None = None  # loop time an environment began to serve it (its cold start's, if one)
        self.ends_by = float("inf")  # loop time by which the function's own timeout has ended it, once it runs
        self.queued: asyncio.Future[None] | None = None  # set while it waits for an environment: resolved at its start
        self.ended: asyncio.Future[None] | None = None  # made when a caller stops waiting (Call.until_ended)
        self.finished = False
        self.cold = False  # its environment was started for it (Lambda's Init Duration goes on its outcome)

    def start(self, at: float) -> None:
        self.started_at = max(self.arrived, at)
        queued = self.queued
        if queued is not None and not queued.done():
            queued.set_result(None)

    def finish(self, inv: Invocation) -> None:
        self.finished = True
        if not self.outcome.done():  # else: the caller stopped waiting (timed out or cancelled)
            self.outcome.set_result(inv)
        self._ended()

    def fail(self, exc: BaseException) -> None:
        """No outcome: `WorkerDied` (nothing could run it), or a bug, which reaches the caller."""
        self.finished = True
        if not self.outcome.done():
            self.outcome.set_exception(exc)
        elif not isinstance(exc, WorkerDied):  # nobody waits for it any more: let asyncio report it
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"invocation {self.request_id} failed after its caller stopped waiting", "exception": exc})
        self._ended()

    def _ended(self) -> None:
        for fut in (self.queued, self.ended):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def until_ended(self) -> asyncio.Future[None]:
        """A future done when the invocation is over (it may outlive its caller's wait)."""
        if self.ended is None:
            self.ended = self.outcome.get_loop().create_future()
            if self.finished:
                self.ended.set_result(None)
        return self.ended


@dataclass(frozen=True)
class Scaling:
    """What a pool asks of the machine before it starts another environment, and how it starts one.

    An argument, not module state: tests answer for the machine here, and a patched module would also
    answer for any gateway running in another thread of the same process."""

    burst_workers: int = BURST_WORKERS
    cpu_to_spare: Callable[[], bool] = cpu_to_spare
    wait_meter: Callable[[], CpuWaitMeter] = CpuWaitMeter
    start_worker: Callable[..., Awaitable[Worker]] = Worker.start


@dataclass(slots=True)
class _Waiting:
    """An invocation waiting for an environment of its function, since loop time `since`."""

    since: float
    call: Call
    event: Any


class FunctionPool:
    """The execution environments of one function: warm idle workers, waiters, and background cold starts."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], console: Console, max_concurrency: int, max_parallel_starts: int = 2,
                 on_post: PostHandler | None = None, scaling: Scaling = Scaling()):
        self.spec = spec
        self.env = env
        self.console = console
        self.on_post = on_post
        self.generation = 0  # bumped by retire(): environments of an older generation are not reused
        self.max_concurrency = max_concurrency
        self.max_parallel_starts = max_parallel_starts
        self.idle: collections.deque[Worker] = collections.deque()
        self.waiters: collections.deque[_Waiting] = collections.deque()
        self.workers: set[Worker] = set()
        self.closed = False
        self.draining = False  # the gateway is stopping and does not need this function: no start, no wait
        self.last_release = 0.0  # loop time an invocation last finished (or a worker became ready)
        self.ready_at = 0.0  # loop time an environment last became ready: a wait counts from then at the earliest
        self.scaling = scaling
        self.cpu_waits = scaling.wait_meter()
        self._start_timer: asyncio.TimerHandle | None = None
        self._preinit_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts: set[asyncio.Task[None]] = set()  # environments starting for this generation

    @property
    def starting(self) -> int:
        return len(self._starts)

    @property
    def total(self) -> int:
        return len(self.workers) + self.starting

    async def prewarm(self) -> None:
        worker = await self._start_worker()
        if worker is not None:
            self.release(worker)

    def retire(self, spec: FunctionSpec | None = None, env: dict[str, str] | None = None) -> int:
        """A deploy: idle environments stop now, busy ones after their invocation; the next invocation cold-starts.

        Environments still starting stop now too (cancelling a start kills its process): they import the
        old code and would serve nobody once up. The invocations waiting for an environment then cold-start
        on the new code at once. Before, they waited for those starts to end first: after a save that fixed
        an init that hangs, `environment.INIT_TIMEOUT_S` (30 s), the invocations sent after the reload line with them.

        Returns how many environments were retired.
        """
        self.generation += 1
        if spec is not None:
            self.spec = spec
        if env is not None:
            self.env = env
        retired = len(self.workers)
        while self.idle:
            self._stop_later(self.idle.pop())
        for task in self._starts:
            task.cancel()
        self._starts.clear()  # counted out now, not when they end: the waiters' starts go first
        self._maybe_start()
        return retired

    def reap_idle(self, idle_for_s: float) -> int:
        """Stop environments unused for `idle_for_s` (Lambda reclaims idle ones); returns how many."""
        now, kept, reaped = time.monotonic(), collections.deque(), 0
        for worker in self.idle:
            if now - worker.last_used >= idle_for_s:
                self._stop_later(worker)
                reaped += 1
            else:
                kept.append(worker)
        self.idle = kept
        return reaped

    def _stop_later(self, worker: Worker) -> None:
        self.workers.discard(worker)
        task = asyncio.create_task(worker.stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def preinitialize(self) -> None:
        """Start one environment ahead of the first invocation, as Lambda's proactive initialization does
        (its init is not reported on the invocation that uses it); nothing when one exists or is starting.

        Not at once: PREINIT_DELAY_S later, and with a CPU to spare (or after PREINIT_ATTEMPTS looks), so
        that it does not slow the first invocations of the client that asked for it (their cold starts)."""
        if self.closed or self.draining or self.workers or self.starting or self._preinit_timer is not None:
            return
        self._preinit_timer = asyncio.get_running_loop().call_later(PREINIT_DELAY_S, self._preinit_when_idle, 1)

    def _preinit_when_idle(self, attempt: int) -> None:
        self._preinit_timer = None
        if self.closed or self.draining or self.workers or self.starting:
            return
        if attempt < PREINIT_ATTEMPTS and not self.scaling.cpu_to_spare():  # on a machine busy for longer: start all the same
            self._preinit_timer = asyncio.get_running_loop().call_later(PREINIT_DELAY_S, self._preinit_when_idle, attempt + 1)
            return
        self._start_in_background(cold=False)

    async def _start_worker(self) -> Worker | None:
        try:
            worker = await self.scaling.start_worker(self.spec, self.env, self.console, self.on_post, self.generation)
        except (OSError, ValueError) as exc:
            self.console.line(f"[{self.spec.logical_id}] could not start a worker: {exc!r}")
            return None
        self.workers.add(worker)
        self.ready_at = asyncio.get_running_loop().time()
        return worker

    def _delayed_start(self) -> None:
        """Cold-start only for invocations that have waited COLD_START_DELAY_S; re-arm for the next one."""
        self._start_timer = None
        if not self.waiters or self.closed or self.draining:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        # A wait counts from when an environment last became ready: the first handshakes of a session all
        # wait for the authorizer's first cold start, which another import in parallel would only slow.
        waited_since = max(self.waiters[0].since, self.ready_at)
        due = waited_since + COLD_START_DELAY_S
        spare = self.scaling.cpu_to_spare()  # every tick, so that its window is the last second, not the quiet before the burst
        if now >= due:
            if self.workers:  # else the first environment is still starting: nothing to judge yet
                self._start_another(now, waited_since, spare)
            due = now + COLD_START_DELAY_S
        self._start_timer = loop.call_at(due, self._delayed_start)

    def _start_another(self, now: float, waited_since: float, spare: bool) -> None:
        """An invocation has waited COLD_START_DELAY_S for a busy environment: start one more if it would help."""
        stuck = now - self.last_release >= STUCK_S
        if self.total < self.scaling.burst_workers:
            starved = self.cpu_waits.starved([w.proc.pid for w in self.workers])
            if stuck or starved is False:  # None: not known yet; the next tick looks over this wait's own window
                self._maybe_start(cap=self.scaling.burst_workers)
        elif spare and (stuck or now - waited_since >= SCALE_OUT_WAIT_S):
            self._maybe_start(parallel=1)

    def _maybe_start(self, parallel: int | None = None, cap: int | None = None) -> None:
        if self.closed or self.draining:
            return
        limit = self.max_parallel_starts if parallel is None else parallel
        most = self.max_concurrency if cap is None else min(cap, self.max_concurrency)
        while (
            self.starting < limit
            and self.total < most
            and len(self.waiters) > self.starting
        ):
            self._start_in_background(cold=True)

    def _start_in_background(self, cold: bool) -> None:
        task = asyncio.create_task(self._background_start(cold))
        self._starts.add(task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background_start(self, cold: bool) -> None:
        try:
            worker = await self._start_worker()
        finally:
            self._starts.discard(asyncio.current_task())  # unless `retire` counted it out already
        if worker is not None:
            worker.cold = cold  # True: the invocation that gets it waited for its start (a cold start)
        if worker is None:
            if self.waiters:
                self.waiters.popleft().call.fail(WorkerDied(f"cannot start {self.spec.logical_id}"))
            return
        self.release(worker)

    def begin(self, event: Any, request_id: str) -> Call:
        """Start one invocation: on a warm idle environment now (its request is on the pipe when this
        returns), else once one is free or has started for it. The returned call's outcome raises
        `WorkerDied` when no environment could run it."""
        loop = asyncio.get_running_loop()
        call = Call(loop, request_id)
        while self.idle:
            worker = self.idle.pop()  # LIFO: the warmest worker
            if worker.alive:
                self._serve(call, worker, event)
                return call
            self.workers.discard(worker)
        if self.draining:
            call.fail(WorkerDied(f"{self.spec.logical_id} not run: the gateway is stopping"))
            return call
        self.waiters.append(_Waiting(loop.time(), call, event))
        call.queued = loop.create_future()
        if not self.workers:
            self._maybe_start(parallel=1)  # nothing warm to wait for: one cold start now (more by the timer's rule)
        if self._start_timer is None:
            # Every worker is busy. Short invocations free one within milliseconds; only a wait
            # longer than COLD_START_DELAY_S (a slow handler) is worth a cold start, which costs
            # ~0.5 s of CPU on a laptop and would slow down everything else during a burst.
            self._start_timer = loop.call_later(COLD_START_DELAY_S, self._delayed_start)
        return call

    def _serve(self, call: Call, worker: Worker, event: Any) -> None:
        call.cold, worker.cold = worker.cold, False
        now = asyncio.get_running_loop().time()
        call.start(now - worker.init_ms / 1000 if call.cold else now)  # a cold start counts as serving it
        try:
            ends_by = worker.begin(event, call.request_id, self.spec.timeout_s, partial(self._end, call, worker))
            if ends_by is not None:
                call.ends_by = ends_by
        except Exception as exc:  # noqa: BLE001 - e.g. an event JSON cannot carry: the caller gets it, the worker serves on
            self.release(worker)
            call.fail(exc)

    def _end(self, call: Call, worker: Worker, inv: Invocation) -> None:
        """An invocation's outcome, in the loop turn it is known: its environment serves the next one now."""
        if worker.init_error is not None:
            self.workers.discard(worker)
        self.release(worker)
        inv.duration_ms = (time.perf_counter() - call.perf_started) * 1000
        if call.cold:
            inv.init_ms = worker.init_ms
        call.finish(inv)

    def release(self, worker: Worker) -> None:
        self.last_release = asyncio.get_running_loop().time()
        worker.last_used = time.monotonic()
        if not worker.alive and worker.init_error is None:
            self.workers.discard(worker)
            self._maybe_start()
            return
        if self.closed:
            return  # close() stops every worker still in self.workers
        if worker.generation != self.generation:  # retired while busy: its code is out of date
            self._stop_later(worker)
            self._maybe_start()
            return
        if self.waiters:
            # The next waiting invocation's request goes on the pipe in the callback that read the last
            # reply. Handed over through a future, it waited for the loop's next turn, behind everything
            # else this turn had read (in a storm, handshakes at ~0.1 ms each), while the environment idled.
            waiting = self.waiters.popleft()
            if worker.init_error is None:
                self._serve(waiting.call, worker, waiting.event)
            else:  # it ends each invocation at once, inside `_serve`: one per callback, or the waiters would recurse
                asyncio.get_running_loop().call_soon(self._serve, waiting.call, worker, waiting.event)
            return
        self.idle.append(worker)

    async def invoke(self, event: Any, request_id: str) -> Invocation:
        """`begin`, awaited: raises `WorkerDied` when no environment could run it."""
        return await self.begin(event, request_id).outcome

    def stop_starting(self) -> int:
        """The gateway is stopping and no longer needs this function: no environment starts for it any
        more (cold starts under way finish and serve no one), and the invocations still waiting for one
        fail now instead of running after their socket has gone. Returns how many were waiting."""
        self.draining = True
        for timer in (self._start_timer, self._preinit_timer):
            if timer is not None:
                timer.cancel()
        self._start_timer = self._preinit_timer = None
        dropped = len(self.waiters)
        while self.waiters:
            self.waiters.popleft().call.fail(WorkerDied(f"{self.spec.logical_id} not run: the gateway is stopping"))
        return dropped

    async def close(self) -> None:
        self.stop_starting()
        self.closed = True
        if self._tasks:  # cold starts in progress: cancelling one kills its process (Worker.start)
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(list(self._tasks), timeout=5)
        await asyncio.gather(*(w.stop() for w in list(self.workers)), return_exceptions=True)
        self.workers.clear()
        self.idle.clear()


class LambdaRuntime:
    """All functions of the stack. `invoke` never blocks on another function or another invocation.

    Environments start on a function's first invocation (a cold start, reported on the invocation),
    more only while invocations wait, and ones idle for `idle_timeout_s` are stopped, as Lambda does.
    """

    def __init__(self, functions: dict[str, FunctionSpec], endpoints: dict[str, str], console: Console, max_concurrency: int = 32,
                 on_post: PostHandler | None = None, idle_timeout_s: float = 300.0):
        self.console = console
        self.endpoints = endpoints
        self.max_concurrency = max_concurrency
        self.on_post = on_post
        self.idle_timeout_s = idle_timeout_s
        self.pools = {lid: self._pool(spec) for lid, spec in functions.items()}
        self._reaper: asyncio.Task[None] | None = None

    def _pool(self, spec: FunctionSpec) -> FunctionPool:
        return FunctionPool(spec, function_environment(spec, self.endpoints), self.console, self.max_concurrency, on_post=self.on_post)

    def start_reaper(self) -> None:
        if self._reaper is None and self.idle_timeout_s > 0:
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        tick = min(30.0, max(0.1, self.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(tick)
            for lid, pool in self.pools.items():
                if reaped := pool.reap_idle(self.idle_timeout_s):
                    self.console.line(f"[{lid}] {reaped} environment(s) idle for {self.idle_timeout_s:g} s stopped")

    def retire(self, logical_ids: set[str]) -> list[str]:
        """New code for these functions: their environments retire; returns the ids that had a pool."""
        done = []
        for lid in sorted(logical_ids):
            if lid in self.pools:
                self.pools[lid].retire()
                done.append(lid)
        return done

    async def replace_functions(self, functions: dict[str, FunctionSpec]) -> tuple[list[str], list[str], list[str]]:
        """A new template: changed functions retire onto their new spec, new ones get pools, removed ones stop.

        Returns (added, changed, removed) logical ids.
        """
        added = sorted(set(functions) - set(self.pools))
        removed = sorted(set(self.pools) - set(functions))
        changed = sorted(lid for lid in set(functions) & set(self.pools) if functions[lid] != self.pools[lid].spec)
        for lid in added:
            self.pools[lid] = self._pool(functions[lid])
        for lid in changed:
            spec = functions[lid]
            self.pools[lid].retire(spec, function_environment(spec, self.endpoints))
        gone = [self.pools.pop(lid) for lid in removed]
        if gone:
            await asyncio.gather(*(p.close() for p in gone), return_exceptions=True)
        return added, changed, removed

    async def prewarm(self, logical_ids: list[str] | None = None) -> None:
        """Start one worker per function (all in parallel), so the first requests are warm."""
        ids = logical_ids if logical_ids is not None else list(self.pools)
        await asyncio.gather(*(self.pools[i].prewarm() for i in ids if i in self.pools))

    def preinitialize(self, logical_id: str) -> None:
        """One environment of this function, started now in the background unless it has one (see FunctionPool)."""
        pool = self.pools.get(logical_id)
        if pool is not None:
            pool.preinitialize()

    def begin(self, logical_id: str, event: Any, request_id: str | None = None) -> Call:
        """Start one invocation (see `FunctionPool.begin`); its call's outcome raises `WorkerDied` when no
        environment could run it (`unavailable` turns that into Lambda's error)."""
        request_id = request_id or uuid4_str()
        pool = self.pools.get(logical_id)
        if pool is not None:
            return pool.begin(event, request_id)
        call = Call(asyncio.get_running_loop(), request_id)
        call.finish(Invocation(request_id, error={"errorMessage": f"function {logical_id} cannot run locally",
                                                  "errorType": "ResourceNotFoundException"}))
        return call

    async def invoke(self, logical_id: str, event: Any, request_id: str | None = None) -> Invocation:
        call = self.begin(logical_id, event, request_id)
        try:
            return await call.outcome
        except WorkerDied as exc:
            return unavailable(call.request_id, exc)

    def stop_starting(self, logical_ids: set[str]) -> None:
        """Shutdown has begun and these functions are not needed for it: none starts an environment any
        more, and the invocations waiting for one are not run; those already running finish (each bounded
        by its timeout). The others (`$disconnect`'s) still scale within the concurrency limit, while a CPU is spare."""
        for lid in sorted(logical_ids & set(self.pools)):
            if dropped := self.pools[lid].stop_starting():
                self.console.line(f"[{lid}] {dropped} invocation(s) still waiting for an environment not run: the gateway is stopping")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await asyncio.gather(*(p.close() for p in self.pools.values()), return_exceptions=True)

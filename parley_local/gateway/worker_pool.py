"""The Lambda worker pool: run the template's functions the way Lambda does: warm worker processes, one invocation each at a time.

Why subprocesses: each function must see only its own environment variables,
its own code and layers on sys.path, and must be killable when it exceeds its
timeout, exactly like a Lambda execution environment. A worker is reused while
warm; when every worker of a function is busy, an invocation waits for the
first of (a worker freed, a new worker started), so a slow handler never
blocks the others, and bursts of short invocations are not each charged a
cold start on a 2-core laptop. IPC is newline-delimited JSON over pipes.

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
import base64
import collections
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson

from ..local_aws.account import FAKE_CREDENTIALS, REGION
from .code_watch import SKIP_DIRS
from .console import Console, LogCopy
from .cpu_meters import CpuWaitMeter, cpu_to_spare
from .environment_process import EnvironmentProcess
from .ids import random_hex, uuid4_str
from .template import FunctionSpec

WORKER_SCRIPT = str(Path(__file__).with_name("worker_main.py"))
INIT_TIMEOUT_S = 30.0
PIPE_LIMIT = 16 * 1024 * 1024
COLD_START_DELAY_S = 0.1  # how long an invocation waits for a busy warm worker before a cold start begins
STUCK_S = 0.25  # no invocation finished for this long while one waits: the pool is stuck (slow handlers)
SCALE_OUT_WAIT_S = 1.0  # a wait this long gets a new worker even while the pool is making progress
PREINIT_DELAY_S = 1.0  # a proactive initialization waits this long, then until a CPU is spare ...
PREINIT_ATTEMPTS = 5  # ... looking once a PREINIT_DELAY_S, this many times at most
TIMEOUT_SLACK_S = 0.001  # a timer may fire this much before its time: the invocation has timed out all the same
BURST_WORKERS = max(2, os.cpu_count() or 2)  # workers per function started for any wait over COLD_START_DELAY_S


def request_line(req: dict[str, Any]) -> bytes:
    """One invocation request as the worker reads it: a line of UTF-8 JSON.

    orjson writes an authorizer's or `$connect`'s event in ~1 µs against the standard library's ~11,
    twice per handshake. It refuses a str holding lone surrogates, which a header's undecodable bytes
    become (aiohttp decodes with `surrogateescape`); the standard library escapes those, and the
    worker reads them back (`surrogatepass`), so such a request takes that path."""
    try:
        return orjson.dumps(req, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(req).encode() + b"\n"


@dataclass
class Invocation:
    """The outcome of one invocation: a result, or an error in Lambda's shape (`errorMessage`, `errorType`)."""

    request_id: str
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    timed_out: bool = False
    init_ms: float | None = None  # set when this invocation cold-started its environment (Lambda's "Init Duration")

    @property
    def ok(self) -> bool:
        return self.error is None


def function_environment(spec: FunctionSpec, endpoints: dict[str, str]) -> dict[str, str]:
    """The process environment of one function: template variables, Lambda's reserved ones, endpoints, fake credentials."""
    env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "en_US.UTF-8", "TZ": ":UTC"}
    if "LD_LIBRARY_PATH" in os.environ:
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    env["POWERTOOLS_TRACE_DISABLED"] = "true"  # no X-Ray daemon locally; a template value wins
    env.update(spec.environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            # Keep the developer's ~/.aws files (profiles, endpoints) out of the function, as on Lambda.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **FAKE_CREDENTIALS,
            **endpoints,
        }
    )
    return env


class WorkerDied(Exception):
    pass


# PostToConnection from a worker, answered by the gateway: (connection id, data) -> (HTTP status, error type, message)
PostHandler = Callable[[str, bytes], Awaitable[tuple[int, str, str]]]
Done = Callable[[Invocation], None]  # told an invocation's outcome, in the loop turn it is known


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


@dataclass
class _ReplyPipe:
    protocol: "_ReplyReader"
    transport: asyncio.ReadTransport
    child_end: int


class _ReplyReader(asyncio.Protocol):
    """A worker's reply pipe, split into lines handed to the worker in the loop turn that reads them.

    Why a protocol, not a StreamReader and a coroutine awaiting `readline`: the reply then finishes
    its invocation right here (see `Call`), with no task to wake and no turn of the loop in between.
    Lines (or the end) read before the worker attaches are kept for it."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._worker: Worker | None = None
        self._early: list[bytes | None] = []  # None: the pipe's end

    def attach(self, worker: "Worker") -> None:
        self._worker = worker
        early, self._early = self._early, []
        for line in early:
            if line is None:
                worker._on_reply_pipe_closed()
            else:
                worker._on_line(line)

    def data_received(self, data: bytes) -> None:  # type: ignore[override]
        buf = self._buf
        if not buf and data.find(b"\n") == len(data) - 1:  # one whole line: a reply, the usual case
            self._line(data)
            return
        scanned = len(buf)
        buf += data
        while (end := buf.find(b"\n", scanned)) >= 0:
            line = bytes(buf[:end + 1])
            del buf[:end + 1]
            scanned = 0
            self._line(line)
        if len(buf) > PIPE_LIMIT and self._worker is not None:
            buf.clear()
            self._worker._on_overlong_line()

    def _line(self, line: bytes) -> None:
        if self._worker is None:
            self._early.append(line)
        else:
            self._worker._on_line(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._worker is None:
            self._early.append(None)
        else:
            self._worker._on_reply_pipe_closed()


async def _reply_pipe() -> _ReplyPipe:
    """The pipe a worker answers on, read by a `_ReplyReader`.

    Why not `stdout=PIPE`: asyncio's subprocess transport hands every chunk read from a child's pipe
    to its protocol through `call_soon`, one more turn of the event loop for every reply before the
    waiting invocation even wakes. Reading our own pipe handles the reply in the turn the data arrives.
    """
    loop = asyncio.get_running_loop()
    read_end, child_end = os.pipe()
    try:
        transport, protocol = await loop.connect_read_pipe(_ReplyReader, os.fdopen(read_end, "rb", buffering=0))
    except BaseException:
        os.close(child_end)
        raise
    return _ReplyPipe(protocol, transport, child_end)


@dataclass
class _PostReplyPipe:
    transport: asyncio.WriteTransport
    child_end: int


async def _post_reply_pipe() -> _PostReplyPipe:
    """The pipe the answers to a worker's `@connections` posts go down (`worker_main.Channel`).

    Why not its stdin, which carries the invocations: the worker would need a thread reading stdin
    to catch a post's answer while its main thread runs the handler, and that thread's hand-off of
    every invocation to the main thread cost ~15 µs of the worker's CPU per invocation (~40%)."""
    loop = asyncio.get_running_loop()
    child_end, write_end = os.pipe()
    try:
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_end, "wb", buffering=0))
    except BaseException:
        os.close(child_end)
        raise
    return _PostReplyPipe(transport, child_end)


class _LogReader(asyncio.Protocol):
    """A worker's log pipe (its stderr), copied to the console in the loop turn each chunk is read.

    Why not `stderr=PIPE` and a task reading it: asyncio's subprocess transport hands each chunk to a
    StreamReader through `call_soon`, which wakes the reading task a turn later; in a handshake storm
    `$connect` logs a line per connection, so that was two loop turns and a task step per connection."""

    def __init__(self, copy: LogCopy) -> None:
        self._copy = copy
        self.closed = asyncio.get_running_loop().create_future()  # the pipe's end (the worker and its children are gone)

    def data_received(self, data: bytes) -> None:  # type: ignore[override]
        self._copy.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._copy.end()
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class _LogPipe:
    protocol: _LogReader
    transport: asyncio.ReadTransport
    child_end: int


async def _log_pipe(copy: LogCopy) -> _LogPipe:
    """The pipe a worker's stderr goes down, read by a `_LogReader`."""
    loop = asyncio.get_running_loop()
    read_end, child_end = os.pipe()
    try:
        transport, protocol = await loop.connect_read_pipe(lambda: _LogReader(copy), os.fdopen(read_end, "rb", buffering=0))
    except BaseException:
        os.close(child_end)
        raise
    return _LogPipe(protocol, transport, child_end)


@dataclass(slots=True)
class _Running:
    """The invocation a worker runs: told its outcome by the reply reader, or by the worker's timeout watch."""

    request_id: str
    timeout_s: float
    done: Done
    deadline: float  # loop time


class Worker:
    """One warm execution environment (a `worker_main.py` subprocess).

    An invocation is `begin`: its request written to the worker's stdin; the reply reader
    (`_ReplyReader`) tells `done` its outcome when the reply line comes, and serves the
    `@connections` posts the handler makes meanwhile.

    The function's timeout is one timer per worker, not one per invocation (`_watch_deadline`): it
    fires at the deadline of the invocation running when it was armed and, finding a later one
    running, re-arms for that. Thousands of millisecond invocations per second then arm a timer
    once per timeout, not each a timer to push onto the loop's heap and cancel (~2 µs each)."""

    def __init__(self, spec: FunctionSpec, proc: EnvironmentProcess, replies: "_ReplyPipe", console: Console,
                 on_post: PostHandler | None = None, generation: int = 0, post_replies: "_PostReplyPipe | None" = None,
                 log: _LogPipe | None = None):
        self.spec = spec
        self.proc = proc
        assert proc.stdin is not None
        self._requests = proc.stdin.transport  # written directly (no drain): one request at a time, buffered by the transport
        self._replies_transport = replies.transport  # the worker's IPC output (its original stdout)
        self._post_reply_pipe = None if post_replies is None else post_replies.transport  # None: the function cannot post
        self.console = console
        self.on_post = on_post
        self.generation = generation  # the pool's code generation this environment was started on
        self.init_error: dict[str, Any] | None = None
        self.init_ms = 0.0
        self.invocations = 0
        self.cold = False  # started for a waiting invocation, which has not run yet
        self.last_used = time.monotonic()
        self.alive = True
        self._seq = 0
        self._running: _Running | None = None
        self._watch: asyncio.TimerHandle | None = None  # the timeout watch, while armed
        self._first_line: asyncio.Future[bytes] | None = asyncio.get_running_loop().create_future()  # the init line
        self._exits: set[asyncio.Task[None]] = set()
        self._posts: set[asyncio.Task[None]] = set()
        self._post_replies: list[list[Any]] = []  # answered posts whose replies go out at the end of this loop turn
        self._log = log  # its stderr, copied to the console as it comes (None: not copied)
        replies.protocol.attach(self)

    @classmethod
    async def start(cls, spec: FunctionSpec, env: dict[str, str], console: Console,
                    on_post: PostHandler | None = None, generation: int = 0) -> "Worker":
        started = time.perf_counter()
        log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        env = {**env, "AWS_LAMBDA_LOG_STREAM_NAME": log_stream}
        cfg = {
            "handler": spec.handler,
            "sys_path": [str(spec.code_dir), *(str(p) for p in spec.layer_dirs)],
            "unwatched_dirs": sorted(SKIP_DIRS),  # not code a redeploy follows: imported as Python imports it
            "code_dir": str(spec.code_dir),
            "function_name": spec.name,
            "function_arn": spec.arn,
            "memory_mb": spec.memory_mb,
            "log_stream": log_stream,
        }
        if on_post is not None:  # PostToConnection to this gateway goes over the pipe (see _lambda_worker)
            cfg["connections_url"] = env.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", "")
        replies = await _reply_pipe()
        post_replies: _PostReplyPipe | None = None
        log: _LogPipe | None = None
        try:
            log = await _log_pipe(LogCopy(console, f"[{spec.logical_id}] ", PIPE_LIMIT))
            if on_post is not None:
                post_replies = await _post_reply_pipe()
                cfg["post_replies_fd"] = post_replies.child_end  # the same number in the child (pass_fds)
            proc = await EnvironmentProcess.spawn(
                [sys.executable, "-I", WORKER_SCRIPT, json.dumps(cfg)],
                stdout=replies.child_end,
                stderr=log.child_end,
                pass_fds=() if post_replies is None else (post_replies.child_end,),
                env=env,
                cwd=str(spec.code_dir) if spec.code_dir.is_dir() else None,
            )
        except BaseException:
            for pipe in (replies, post_replies, log):
                if pipe is not None:
                    pipe.transport.close()
            raise
        finally:
            os.close(replies.child_end)  # the child's copy is the only one: its exit is our EOF
            if post_replies is not None:
                os.close(post_replies.child_end)  # likewise: our closing the other end is the worker's EOF
            if log is not None:
                os.close(log.child_end)  # likewise: the log ends when the worker (and whatever inherited it) has gone
        worker = cls(spec, proc, replies, console, on_post, generation, post_replies, log)
        try:
            assert worker._first_line is not None
            line = await asyncio.wait_for(worker._first_line, INIT_TIMEOUT_S)
            msg = json.loads(line) if line else {"init_error": {"errorMessage": "Runtime exited during init", "errorType": "Runtime.ExitError"}}
        except (asyncio.TimeoutError, ValueError) as exc:
            msg = {"init_error": {"errorMessage": f"init failed: {exc!r}", "errorType": "Runtime.InitError"}}
        except BaseException:
            worker.kill()
            raise
        finally:
            worker._first_line = None
        worker.init_ms = (time.perf_counter() - started) * 1000
        if "init_error" in msg:
            worker.init_error = msg["init_error"]
            err = worker.init_error
            console.line(f"[{spec.logical_id}] init failed: {err.get('errorType')}: {err.get('errorMessage')} "
                         "(each invocation gets this error until the code is fixed; the gateway keeps running)")
            worker.kill()
        return worker

    def open_pipe_fds(self) -> list[int]:
        """The gateway's ends of this environment's pipes that are still open (requests, replies, post replies,
        log): what a stopped environment must have closed, for the leak checks."""
        transports = (self._requests, self._replies_transport, self._post_reply_pipe, None if self._log is None else self._log.transport)
        fds = []
        for transport in transports:
            pipe = None if transport is None or transport.is_closing() else transport.get_extra_info("pipe")
            try:
                fds.append(pipe.fileno())
            except (AttributeError, ValueError, OSError):  # none, or closed already
                pass
        return fds

    def begin(self, event: Any, request_id: str, timeout_s: float, done: Done) -> float | None:
        """Send one invocation; `done` gets its outcome when the reply is read. On timeout the worker is
        killed (and must be replaced), as Lambda does. `done` may be called before this returns (then
        None is); else the loop time of its timeout, by which `done` has been told."""
        if self.init_error is not None:
            done(Invocation(request_id, error=self.init_error))
            return None
        if not self.alive:  # it died (or was stopped) after the pool handed it over
            done(Invocation(request_id, error={"errorMessage": "Runtime exited before the invocation", "errorType": "Runtime.ExitError"}))
            return None
        self._seq += 1
        now = time.time()
        trace = f"Root=1-{int(now):08x}-{random_hex(24)};Parent={random_hex(16)};Sampled=0"
        req = {"id": self._seq, "event": event, "request_id": request_id, "deadline_ms": int(now * 1000 + timeout_s * 1000),
               "trace_id": trace}
        line = request_line(req)
        self.invocations += 1
        loop = asyncio.get_running_loop()
        running = self._running = _Running(request_id, timeout_s, done, loop.time() + timeout_s)
        watch = self._watch
        if watch is None or watch.when() > running.deadline:  # (a shorter timeout than the last one's: a redeploy)
            if watch is not None:
                watch.cancel()
            self._watch = loop.call_at(running.deadline, self._watch_deadline)
        self._requests.write(line)  # a dead worker's broken pipe shows as the reply pipe's end
        return running.deadline

    async def invoke(self, event: Any, request_id: str, timeout_s: float) -> Invocation:
        """`begin`, awaited: the tests drive an environment without a pool this way."""
        outcome: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()

        def done(inv: Invocation) -> None:
            if not outcome.done():
                outcome.set_result(inv)

        self.begin(event, request_id, timeout_s, done)
        return await outcome

    def _watch_deadline(self) -> None:
        self._watch = None
        running = self._running
        if running is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() + TIMEOUT_SLACK_S < running.deadline:  # a later invocation than the one it was armed for
            self._watch = loop.call_at(running.deadline, self._watch_deadline)
            return
        self._running = None
        self.kill()
        msg = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {running.request_id} Task timed out after {running.timeout_s:.2f} seconds"
        self.console.line(f"[{self.spec.logical_id}] {msg}")
        running.done(Invocation(running.request_id, error={"errorMessage": msg, "errorType": "Sandbox.Timedout"}, timed_out=True))

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _on_line(self, line: bytes) -> None:
        """A line from the worker: a batch of posts, its init line, or the reply of the invocation it runs."""
        if line.startswith(b'{"posts"'):
            self._serve_posts(line)
            return
        running = self._running
        if running is None:
            if self._first_line is not None and not self._first_line.done():
                self._first_line.set_result(line)
            return  # else nothing waits for it (its invocation timed out and the worker was killed)
        self._running = None
        try:
            reply = json.loads(line)
        except ValueError as exc:
            self.kill()
            running.done(Invocation(running.request_id, error={
                "errorMessage": f"Runtime exited: an unreadable reply ({exc})", "errorType": "Runtime.ExitError"}))
            return
        if "error" in reply:
            running.done(Invocation(running.request_id, error=reply["error"]))
        else:
            running.done(Invocation(running.request_id, result=reply.get("result")))

    def _on_overlong_line(self) -> None:
        self.kill()
        running, self._running = self._running, None
        if running is not None:
            running.done(Invocation(running.request_id, error={
                "errorMessage": f"Runtime exited: a reply longer than {PIPE_LIMIT} bytes", "errorType": "Runtime.ExitError"}))

    def _on_reply_pipe_closed(self) -> None:
        """The worker exited (or was killed): the invocation it ran gets `Runtime.ExitError` with its exit status."""
        if self._first_line is not None and not self._first_line.done():
            self._first_line.set_result(b"")
        running, self._running = self._running, None
        self.kill()
        if running is not None:
            task = asyncio.get_running_loop().create_task(self._exited(running))
            self._exits.add(task)
            task.add_done_callback(self._exits.discard)

    async def _exited(self, running: _Running) -> None:
        code = await self.proc.wait()
        running.done(Invocation(running.request_id, error={
            "errorMessage": f"Runtime exited with error: exit status {code}", "errorType": "Runtime.ExitError"}))

    def _serve_posts(self, line: bytes) -> None:
        """`@connections` posts the handler makes while it runs, served as they come."""
        loop = asyncio.get_running_loop()
        for post in json.loads(line)["posts"]:
            # Started eagerly: a post that completes without waiting (no --post-latency-ms, socket
            # writable) costs no task scheduling; its reply joins this loop turn's batch.
            task = asyncio.Task(self._serve_post(post), loop=loop, eager_start=True)
            if not task.done():
                self._posts.add(task)
                task.add_done_callback(self._posts.discard)

    async def _serve_post(self, post: list[Any]) -> None:
        """One post of a `{"posts": [[id, connection_id, data, base64?], ...]}` batch (worker_main.Channel)."""
        assert self.on_post is not None
        seq, connection_id, text = post[0], post[1], post[2]
        data = base64.b64decode(text) if len(post) > 3 and post[3] else text.encode()
        try:
            status, error_type, message = await self.on_post(connection_id, data)
        except Exception as exc:  # noqa: BLE001 - the handler gets a 500, as from a failing API
            status, error_type, message = 500, "InternalServerErrorException", repr(exc)
        if not self._post_replies:
            asyncio.get_running_loop().call_soon(self._send_post_replies)
        self._post_replies.append([seq, status, error_type, message])

    def _send_post_replies(self) -> None:
        """The replies of every post answered in one loop turn, as one `{"post_replies": [...]}` line."""
        replies, self._post_replies = self._post_replies, []
        pipe = self._post_reply_pipe
        if pipe is not None and not pipe.is_closing() and self.proc.returncode is None:
            pipe.write(json.dumps({"post_replies": replies}).encode() + b"\n")

    def _close_post_replies(self) -> None:
        """No answer will come: every post the handler is waiting on (or makes next) gets a 500."""
        if self._post_reply_pipe is not None:
            self._post_reply_pipe.close()

    def kill(self) -> None:
        self.alive = False
        self._stop_watch()
        self._close_post_replies()
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        if self.proc.stdin is not None:  # lets asyncio close the transport once the process is gone
            self.proc.stdin.close()
        self._replies_transport.close()  # nothing more is read from a killed environment

    async def stop(self) -> None:
        """Ask the worker to exit (EOF on its stdin), killing it if it does not within a second.

        A handler still running (the gateway is stopping) gets a 500 for each post it waits on."""
        self.alive = False
        self._close_post_replies()
        if self.proc.returncode is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                await asyncio.wait_for(self.proc.wait(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, BrokenPipeError):
                self.kill()
                await self.proc.wait()
        self._replies_transport.close()  # read to its EOF by now, unless the process never closed it
        self._stop_watch()
        if self._log is not None:  # its last lines are copied before it counts as stopped
            try:
                await asyncio.wait_for(asyncio.shield(self._log.protocol.closed), 1.0)
            except asyncio.TimeoutError:  # a process it started still holds the log open
                self._log.transport.close()


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
        an init that hangs, INIT_TIMEOUT_S (30 s), the invocations sent after the reload line with them.

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

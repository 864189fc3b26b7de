"""One execution environment: a `worker_main.py` process, its pipes, and one invocation at a time.

Why a process per environment: each function must see only its own environment variables, its own
code and layers on sys.path, and must be killable when it exceeds its timeout, exactly like a Lambda
execution environment; module state lives as long as the environment, as on Lambda.

The pipes: requests go down the process's stdin, one line of JSON each (`request_line`); its replies
and its `@connections` posts come back as lines on one pipe (its stdout, read in the loop turn that
receives them), the posts' answers go down a pipe of their own, and its stderr (the function's log)
is copied to the console as it is read (`console.LogCopy`). When environments start, are reused and
stop is the pool's business (`worker_pool`); this module runs one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson

from ..local_aws.account import FAKE_CREDENTIALS, REGION
from .code_watch import SKIP_DIRS
from .console import Console, LogCopy
from .environment_process import EnvironmentProcess
from .ids import random_hex
from .template import FunctionSpec

WORKER_SCRIPT = str(Path(__file__).with_name("worker_main.py"))
INIT_TIMEOUT_S = 30.0
PIPE_LIMIT = 16 * 1024 * 1024
TIMEOUT_SLACK_S = 0.001  # a timer may fire this much before its time: the invocation has timed out all the same


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


@dataclass
class _ReplyPipe:
    protocol: "_ReplyReader"
    transport: asyncio.ReadTransport
    child_end: int


class _ReplyReader(asyncio.Protocol):
    """A worker's reply pipe, split into lines handed to the worker in the loop turn that reads them.

    Why a protocol, not a StreamReader and a coroutine awaiting `readline`: the reply then finishes
    its invocation right here (see `worker_pool.Call`), with no task to wake and no turn of the loop in between.
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

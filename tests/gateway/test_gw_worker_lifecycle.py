"""An execution environment's pipes: replies come back on the gateway's own pipe, and nothing is left open.

Why: workers answer on a pipe the gateway creates and reads with a plain StreamReader (not the
subprocess transport's, which costs an event-loop turn per reply). That pipe must carry the
ready line, every reply and the timeout kill exactly as before, and be closed with the
environment, whether it is stopped, killed on its timeout or fails its init: a laptop session
starts and reaps many environments. The answers to a function's `@connections` posts go down a
pipe of their own, read by a thread the worker starts on its first post only (no thread hand-off
of each invocation): a function that never posts runs no such thread, and a stopping gateway
answers every waiting post with a 500.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from parley_local.gateway.console import Console
from parley_local.gateway.environment_process import EnvironmentProcess
from parley_local.gateway.event_loop import new_event_loop
from parley_local.gateway.template import FunctionSpec
from parley_local.gateway.environment import Worker, function_environment

HANDLER = '''
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"echo": event, "request": context.aws_request_id}
'''


def _spec(tmp_path: Path, source: str | None, timeout_s: float = 5.0, handler: str = "app.handler",
          layer_dirs: list[Path] | None = None) -> FunctionSpec:
    """EchoFunction with its code in `tmp_path` (`source` as app.py, unless None)."""
    if source is not None:
        (tmp_path / "app.py").write_text(source)
    return FunctionSpec("EchoFunction", "stack-EchoFunction", "arn:aws:lambda:us-east-1:123456789012:function:stack-EchoFunction",
                        tmp_path, handler, "python3.13", timeout_s, 128, {}, layer_dirs or [])


async def _init_error(spec: FunctionSpec) -> dict | None:
    """What a new environment of `spec` reports from its init (None: it came up)."""
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        return worker.init_error
    finally:
        await worker.stop()


def _pipes() -> set[str]:
    """The pipes this process holds open, by name ("pipe:[inode]")."""
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("pipe:"):
            names.add(link)
    return names


class PipeWatch:
    """The environments' pipes (by name, from the gateway's own ends), and which of them are still open.

    Why not a count of open files: gateways of other tests run in threads of this process for a module
    or the session, and open sockets, start environments or reap them at any time (a CI run counted
    244 == 245)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def add(self, worker: Worker) -> None:
        names = set()
        for fd in worker.open_pipe_fds():
            try:
                names.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:  # closed meanwhile
                pass
        if worker.init_error is None:  # a failed init's environment is killed at once: its pipes may be closing
            assert len(names) >= 3, names  # requests, replies, log (and post replies where it can post)
        self.seen |= names

    def left_open(self) -> set[str]:
        return self.seen & _pipes()


async def test_replies_arrive_and_a_stopped_environment_leaves_no_pipe_open(tmp_path: Path):
    spec = _spec(tmp_path, HANDLER)
    pipes = PipeWatch()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    pipes.add(worker)
    assert worker.init_error is None
    for i in range(3):
        inv = await worker.invoke({"n": i}, f"req-{i}", spec.timeout_s)
        assert inv.ok and inv.result == {"echo": {"n": i}, "request": f"req-{i}"}
    await worker.stop()
    assert worker.proc.returncode == 0
    assert pipes.left_open() == set()


async def test_an_event_reaches_the_handler_exactly_as_the_gateway_sent_it(tmp_path: Path):
    """The environment reads each request line as UTF-8 text holding one JSON document (cheaper than
    json.loads on the bytes): non-ASCII text, an escaped lone surrogate, control characters and numbers
    still reach the handler, and come back in its reply, unchanged."""
    spec = _spec(tmp_path, HANDLER)
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        event = {"body": "héllo, wörld: 你好 🎉", "lone": "\ud800", "ctl": "a\tb\nc\u0000", "n": [0, -1, 2.5, 1e300, None, True],
                 "headers": {"Origin": "https://chat.example.com"}}
        inv = await worker.invoke(event, "req-text", spec.timeout_s)
        assert inv.ok and inv.result == {"echo": event, "request": "req-text"}
    finally:
        await worker.stop()


async def test_an_environment_killed_on_its_timeout_leaves_no_pipe_open(tmp_path: Path):
    spec = _spec(tmp_path, HANDLER, timeout_s=0.5)
    pipes = PipeWatch()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    pipes.add(worker)
    inv = await worker.invoke({"sleep": 5}, "req-slow", spec.timeout_s)
    assert inv.timed_out and inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout"
    assert not worker.alive
    await worker.stop()
    assert pipes.left_open() == set()


async def test_each_invocation_gets_its_whole_timeout_though_the_environment_watches_with_one_timer(tmp_path: Path):
    """The timeout watch is armed at the first invocation's deadline; a slow invocation that began later
    still runs its full timeout from its own start (the watch re-arms), and is then stopped on time."""
    spec = _spec(tmp_path, HANDLER, timeout_s=0.6)
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        loop = asyncio.get_running_loop()
        first = loop.time()
        while loop.time() - first < 0.4:  # quick invocations past most of the first one's timeout
            assert (await worker.invoke({}, "req-quick", spec.timeout_s)).ok
        began = loop.time()
        inv = await asyncio.wait_for(worker.invoke({"sleep": 5}, "req-slow", spec.timeout_s), 5)
        ran = loop.time() - began
        assert inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout"
        assert 0.55 <= ran < 1.5, ran
    finally:
        await worker.stop()


async def test_an_init_failure_is_read_from_the_pipe_and_leaves_no_pipe_open(tmp_path: Path):
    spec = _spec(tmp_path, "def handler(event, context):\n    return (\n")
    pipes = PipeWatch()
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    pipes.add(worker)
    assert worker.init_error is not None and worker.init_error["errorType"] == "Runtime.UserCodeSyntaxError"
    inv = await worker.invoke({}, "req-x", spec.timeout_s)
    assert inv.error == worker.init_error
    await worker.stop()
    assert pipes.left_open() == set()


async def test_an_attribute_error_while_importing_is_not_a_missing_handler(tmp_path: Path):
    """Lambda's runtime reports `Runtime.HandlerNotFound` only when the imported module lacks the handler;
    an AttributeError raised by the module's own code (a typo at module level, in it or in a layer) is
    that error, as any exception during init: telling the developer the handler is missing sends them
    looking in the wrong place."""
    error = await _init_error(_spec(tmp_path, "import os\n\nTABLE = os.enviorn\n\n" + HANDLER))
    assert error is not None and error["errorType"] == "AttributeError"
    assert "has no attribute 'enviorn'" in error["errorMessage"]
    error = await _init_error(_spec(tmp_path, HANDLER.replace("def handler(", "def handle(")))
    assert error is not None and error["errorType"] == "Runtime.HandlerNotFound"
    assert error["errorMessage"] == "Handler 'handler' missing on module 'app'"


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


CONNECTIONS = {"AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": "http://127.0.0.1:9/dev"}  # nothing listens: only the pipe answers

POSTING_HANDLER = '''
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"],
                      config=Config(retries={"total_max_attempts": 1}))


def post(connection_id):
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=b"hi")
        return 200
    except client.exceptions.ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def handler(event, context):
    statuses = []
    if event.get("posts"):
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, event["posts"]))
    late = post("late") if event.get("late") else None
    print(f"statuses {statuses} late {late}", file=sys.stderr)
    return {"statuses": statuses, "late": late, "threads": sorted(t.name for t in threading.enumerate())}
'''


async def _answer(connection_id: str, data: bytes) -> tuple[int, str, str]:
    return (200, "", "") if connection_id.startswith("open") else (410, "GoneException", "Gone")


async def test_a_function_starts_its_post_reply_reader_on_its_first_post_only(tmp_path: Path):
    """The authorizer and `$connect` never post: their environments must run no thread beside the parent watch."""
    spec = _spec(tmp_path, POSTING_HANDLER)
    worker = await Worker.start(spec, function_environment(spec, CONNECTIONS), Console(quiet=True), on_post=_answer)
    try:
        assert worker.init_error is None, worker.init_error
        for i in range(2):
            inv = await worker.invoke({}, f"req-{i}", spec.timeout_s)
            assert inv.ok, inv.error
            assert inv.result["threads"] == ["MainThread", "parent-watch"]
        targets = [f"open-{i}" if i % 3 else f"gone-{i}" for i in range(24)]
        inv = await worker.invoke({"posts": targets}, "req-posts", spec.timeout_s)
        assert inv.ok, inv.error
        assert inv.result["statuses"] == [200 if i % 3 else 410 for i in range(24)]  # each post its own answer
        assert inv.result["threads"] == ["MainThread", "parent-watch", "post-replies"]
    finally:
        await worker.stop()


async def test_a_stopping_gateway_answers_waiting_and_later_posts_with_500(tmp_path: Path):
    """Posts waiting for an answer when the gateway closes the post-reply pipe, and a post made after,
    get the HTTP route's 500 at once; the handler finishes and the environment exits on its own."""
    spec = _spec(tmp_path, POSTING_HANDLER, timeout_s=10.0)
    arrived, answer = asyncio.Event(), asyncio.Event()
    posted: list[str] = []

    async def slow_answer(connection_id: str, data: bytes) -> tuple[int, str, str]:
        posted.append(connection_id)
        if len(posted) == 8:
            arrived.set()
        await answer.wait()  # after the pipe closed: the answer has nowhere to go
        return 200, "", ""

    out = io.StringIO()
    pipes = PipeWatch()
    worker = await Worker.start(spec, function_environment(spec, CONNECTIONS), Console(stream=out), on_post=slow_answer)
    pipes.add(worker)
    assert worker.init_error is None, worker.init_error
    invocation = asyncio.create_task(worker.invoke({"posts": ["open"] * 8, "late": True}, "req-stop", spec.timeout_s))
    await asyncio.wait_for(arrived.wait(), 10)
    await worker.stop()
    assert worker.proc.returncode == 0  # it left on its own, within stop's second: not killed
    assert "[EchoFunction] statuses [500, 500, 500, 500, 500, 500, 500, 500] late 500" in out.getvalue()
    assert posted == ["open"] * 8  # the late post never reached the gateway
    answer.set()
    await asyncio.wait_for(invocation, 5)
    await asyncio.sleep(0.05)  # the post tasks answer into the closed pipe, harmlessly
    assert pipes.left_open() == set()


async def test_environments_that_can_post_leave_no_pipe_open(tmp_path: Path):
    """Each start opens a post-reply pipe as well: stopped, killed on a timeout or failing its init, all its ends close."""
    spec = _spec(tmp_path, HANDLER, timeout_s=0.5)
    env = function_environment(spec, CONNECTIONS)
    pipes = PipeWatch()
    for i in range(6):
        worker = await Worker.start(spec, env, Console(quiet=True), on_post=_answer)
        pipes.add(worker)
        inv = await worker.invoke({"sleep": 2} if i % 2 else {"n": i}, f"req-{i}", spec.timeout_s)
        assert inv.timed_out if i % 2 else inv.ok
        await worker.stop()
    (tmp_path / "broken").mkdir()
    broken = _spec(tmp_path / "broken", "def handler(:\n")
    worker = await Worker.start(broken, env, Console(quiet=True), on_post=_answer)
    pipes.add(worker)
    assert worker.init_error is not None
    await worker.stop()
    assert pipes.left_open() == set()


MARSHAL_HANDLER = '''
from decimal import Decimal


def handler(event, context):
    if event.get("unserialisable"):
        return {"set": {1, 2}}
    return {"count": Decimal("3"), "ratio": Decimal("1.5")}
'''


async def test_replies_serialise_decimals_as_numbers_and_report_a_marshal_error(tmp_path: Path):
    """As Lambda's runtime: boto3's DynamoDB Decimals become JSON numbers; a result JSON cannot hold is
    `Runtime.MarshalError`, and the environment keeps serving."""
    spec = _spec(tmp_path, MARSHAL_HANDLER)
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        inv = await worker.invoke({}, "req-1", spec.timeout_s)
        assert inv.ok and inv.result == {"count": 3, "ratio": 1.5} and isinstance(inv.result["count"], int)
        inv = await worker.invoke({"unserialisable": True}, "req-2", spec.timeout_s)
        assert inv.error is not None and inv.error["errorType"] == "Runtime.MarshalError"
        assert inv.error["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"
        assert set(inv.error) == {"errorMessage", "errorType", "stackTrace"}  # the shape of a handler's error
        inv = await worker.invoke({}, "req-3", spec.timeout_s)
        assert inv.ok and worker.alive
    finally:
        await worker.stop()


async def test_a_shorter_timeout_than_the_last_invocations_is_kept_too(tmp_path: Path):
    """The timeout watch armed for a long timeout must not let a later, shorter one run past its own."""
    spec = _spec(tmp_path, HANDLER, timeout_s=5.0)
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        assert (await worker.invoke({}, "req-long-timeout", 30.0)).ok  # the watch is armed 30 s ahead
        loop = asyncio.get_running_loop()
        began = loop.time()
        inv = await asyncio.wait_for(worker.invoke({"sleep": 5}, "req-short", 0.5), 5)
        assert inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout"
        assert loop.time() - began < 1.5
    finally:
        await worker.stop()


IMPORTS_HANDLER = '''
import helper


def handler(event, context):
    return {"helper_file": helper.where.__code__.co_filename, "helper_loader": type(helper.__loader__).__name__,
            "vendored_loader": type(__import__(event["vendored"]).__loader__).__name__ if event.get("vendored") else None}
'''


async def _imports_of(code_dir: Path, event: dict, layer_dirs: list[Path] | None = None) -> dict:
    spec = _spec(code_dir, None, layer_dirs=layer_dirs)
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        inv = await worker.invoke(event, "req-imports", spec.timeout_s)
        assert inv.ok, inv.error
        return inv.result
    finally:
        await worker.stop()


async def test_code_moved_with_its_bytecode_cache_names_where_it_is_now(tmp_path: Path):
    """A project copied or moved with its `__pycache__`: the cached code was compiled where the files were,
    and tracebacks (and linecache) must name where they are now, as the standard loader has them."""
    first = tmp_path / "first"
    first.mkdir()
    (first / "app.py").write_text(IMPORTS_HANDLER)
    (first / "helper.py").write_text("def where():\n    return 1\n")
    assert (await _imports_of(first, {}))["helper_file"] == str(first / "helper.py")  # compiled, cached beside it
    assert list((first / "__pycache__").glob("helper.*.pyc"))
    moved = tmp_path / "moved"
    first.rename(moved)
    result = await _imports_of(moved, {})
    assert result["helper_loader"] == "_CurrentSourceLoader"  # read from the cache the first environment wrote
    assert result["helper_file"] == str(moved / "helper.py")


async def test_installed_packages_under_the_code_import_as_python_imports_them(tmp_path: Path):
    """`CodeUri: .` with a virtualenv in the project: its packages are not code a redeploy follows (the
    watcher skips such folders), so they keep the standard loader and pip's timestamp-based caches."""
    (tmp_path / "app.py").write_text(IMPORTS_HANDLER)
    (tmp_path / "helper.py").write_text("def where():\n    return 1\n")
    site = tmp_path / ".venv" / "lib" / "python3.13" / "site-packages"
    (site / "vendored_pkg").mkdir(parents=True)
    (site / "vendored_pkg" / "__init__.py").write_text("")
    result = await _imports_of(tmp_path, {"vendored": "vendored_pkg"}, layer_dirs=[site])  # on the path, inside the code
    assert result["helper_loader"] == "_CurrentSourceLoader"
    assert result["vendored_loader"] == "SourceFileLoader"


def _environment_children() -> list[int]:
    """This process's children that run worker_main.py (execution environments), by /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                args = cmdline.read()
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if parent == os.getpid() and b"worker_main.py" in args:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads children from /proc")
def test_a_ctrl_c_while_an_environment_starts_on_the_gateways_loop_does_not_kill_it(tmp_path: Path):
    """A terminal's Ctrl-C reaches every process of the group, environments starting included: they must
    come up and serve (the gateway needs them for `$disconnect`). On uvloop, the loop's own spawner
    emptied the child's signal mask, and a SIGINT during its interpreter's start killed it."""
    spec = _spec(tmp_path, HANDLER)
    started = threading.Event()

    def ctrl_c_until_started() -> None:
        deadline = time.monotonic() + 10
        while not started.is_set() and time.monotonic() < deadline:
            for pid in _environment_children():
                try:
                    os.kill(pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)

    async def start_and_invoke() -> tuple[Any, Any]:
        presser = threading.Thread(target=ctrl_c_until_started, daemon=True)
        presser.start()
        try:
            worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
        finally:
            started.set()
            presser.join(5)
        try:
            return worker.init_error, await worker.invoke({"n": 1}, "req-after-ctrl-c", spec.timeout_s)
        finally:
            await worker.stop()

    loop = new_event_loop()  # the gateway's own (uvloop where there is one), not the tests' default loop
    try:
        init_error, inv = loop.run_until_complete(start_and_invoke())
    finally:
        loop.close()
    assert init_error is None
    assert inv.ok and inv.result["echo"] == {"n": 1}


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the signal mask from /proc")
def test_environments_start_with_ctrl_c_and_sigterm_blocked_on_the_gateways_loop(tmp_path: Path):
    read, write = os.pipe()

    async def spawn() -> int:
        proc = await EnvironmentProcess.spawn(
            [sys.executable, "-I", "-c", "print(open('/proc/self/status').read(), flush=True)"],
            stdout=write, stderr=write, pass_fds=(), env=dict(os.environ), cwd=None)
        os.close(write)
        return await proc.wait()

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(spawn()) == 0
    finally:
        loop.close()
    with os.fdopen(read) as out:
        status = dict(line.split(":\t", 1) for line in out.read().splitlines() if ":\t" in line)
    blocked = int(status["SigBlk"], 16)
    assert blocked & (1 << (signal.SIGINT - 1)) and blocked & (1 << (signal.SIGTERM - 1)), status["SigBlk"]


async def test_a_handler_in_a_subfolder_is_named_with_a_slash_as_lambda_reads_it(tmp_path: Path):
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "app.py").write_text(HANDLER)
    spec = _spec(tmp_path, None, handler="handlers/app.handler")
    worker = await Worker.start(spec, function_environment(spec, {}), Console(quiet=True))
    try:
        assert worker.init_error is None
        assert (await worker.invoke({"n": 2}, "req-slash", spec.timeout_s)).result["echo"] == {"n": 2}
    finally:
        await worker.stop()


async def test_a_handler_without_a_module_is_lambdas_malformed_handler_name(tmp_path: Path):
    error = await _init_error(_spec(tmp_path, None, handler="handler"))
    assert error is not None and error["errorType"] == "Runtime.MalformedHandlerName"
    assert error["errorMessage"] == "Bad handler 'handler': not enough values to unpack (expected 2, got 1)"

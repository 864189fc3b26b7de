"""The Lambda worker entry point: one execution environment that imports a handler once, then serves invocations one at a time.

Run by `environment.Worker` as `python -I worker_main.py CONFIG_JSON` (stdlib
only, executed by path, so nothing of the gateway leaks onto the handler's
sys.path). The IPC channel is newline-delimited JSON: requests on the
original stdin, read by the main thread itself; replies on the original
stdout; the answers to `@connections` posts on a pipe of their own (fd
`post_replies_fd` of the config). Why a pipe of its own: while posts and
requests shared stdin, a reader thread had to hand every request to the main
thread, and that hand-off (a futex wake, the GIL changing hands) cost ~15 µs
of CPU and as much latency per invocation of a trivial handler on a quiet
machine (35 -> 20 µs), ~30 µs of each under load; a function that never posts
now runs no thread for it at all. The handler's own stdout and
stderr both go to this process's stderr, which the gateway forwards to its
console with the function name as prefix (Lambda sends both to CloudWatch).

`@connections` over the pipes: a handler's `PostToConnection` to this gateway's own endpoint
still goes through its client (boto3: parameter validation, serialization, the client's
exceptions; or a hand-signed urllib3 POST), but the worker hands the request to the gateway as
JSON on the pipe instead of an HTTP request (botocore's `before-call` hook, before signing; or at
urllib3's pool manager and connection pool, with the signature skipped): no TCP round trip, no
aiohttp request in the gateway. Profiling showed those costs ~1 ms of CPU per post, so fan-out to
1,000 took a second of CPU in HTTP alone. Posts that arrive together travel as one batch line and
come back as one reply line (`Channel`); each gets the status the HTTP API would give (200,
410 Gone, 413, 429).
"""

from __future__ import annotations

import base64
import collections
import decimal
import _imp
import importlib
import itertools
import json
import marshal
import os
import signal
import sys
import threading
import time
import traceback
from importlib import machinery as import_machinery, util as import_util
from typing import Any, Callable
from urllib.parse import unquote, urlsplit


class LambdaContext:
    """The subset of the Lambda Python runtime's context object that handlers and powertools use."""

    def __init__(self, cfg: dict[str, Any], request_id: str, deadline_ms: int):
        self.function_name: str = cfg["function_name"]
        self.function_version: str = "$LATEST"
        self.invoked_function_arn: str = cfg["function_arn"]
        self.memory_limit_in_mb: str = str(cfg["memory_mb"])
        self.aws_request_id: str = request_id
        self.log_group_name: str = f"/aws/lambda/{self.function_name}"
        self.log_stream_name: str = cfg["log_stream"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


def _json_default(obj: Any) -> Any:
    # The Lambda runtime serialises Decimal (boto3's DynamoDB numbers) as numbers.
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# json.dumps(default=...) builds a new encoder on every call: one for every reply saves ~1 µs of an invocation's ~20.
_REPLY_ENCODER = json.JSONEncoder(default=_json_default)
# A request line is one JSON document in UTF-8 (`environment.request_line`). json.loads(bytes) would first guess
# its encoding and then look for text after the document: decoding it as UTF-8 (`surrogatepass`, as json.loads
# does) and reading one document cut the environment's own CPU per invocation from ~29 to ~25 µs (a handler
# that returns at once, a handshake's ~2 KB event, alternated rounds).
_REQUEST_DECODER = json.JSONDecoder()


def read_request(line: bytes) -> dict[str, Any]:
    return _REQUEST_DECODER.raw_decode(line.decode("utf-8", "surrogatepass"))[0]


REQUEST_BUFFER = 1 << 16  # an event with a 32 KB client frame in one read(), not one per 4 KiB (a pipe's block size)


def _error(exc: BaseException, error_type: str | None = None, skip_frames: int = 0) -> dict[str, Any]:
    tb_obj = exc.__traceback__
    for _ in range(skip_frames):  # hide this runtime's own frame, as Lambda's runtime does
        if tb_obj is not None and tb_obj.tb_next is not None:
            tb_obj = tb_obj.tb_next
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(traceback.extract_tb(tb_obj)),
        "_traceback": "".join(traceback.format_exception(type(exc), exc, tb_obj)),
    }


def _log_error(err: dict[str, Any]) -> None:
    sys.stderr.write(f"[ERROR] {err['errorType']}: {err['errorMessage']}\n{err.get('_traceback', '')}")
    sys.stderr.flush()


BATCH_BYTES = 1 << 20  # a batch line stays far below the gateway's 16 MiB pipe line limit
READER_THREAD = "post-replies"


class Channel:
    """The pipes to the gateway: replies and `@connections` posts out, the posts' answers in.

    A fan-out posts from many threads at once, so a post costs as little as the pipe allows:
    posts that arrive while another thread is writing ride along in that thread's next write, as
    one `{"posts": [[id, connection_id, data, base64?], ...]}` line (one syscall, one parse in the
    gateway), and the gateway answers a batch with one `{"post_replies": [[id, status, type,
    message], ...]}` line on the post-reply pipe. Each waiting thread parks on a plain lock that
    the reader thread releases (cheaper than an Event's condition variable). Every post still
    gets its own answer. The reader thread starts with the first post: the authorizer and
    `$connect` never post, so their environments never run it.
    """

    def __init__(self, post_replies: Any, ipc_out: Any) -> None:
        self._in, self._out = post_replies, ipc_out  # post_replies None: this environment cannot post
        self._write_lock = threading.Lock()
        self._lines: collections.deque[bytes] = collections.deque()  # whole lines (replies), sent as they are
        self._posts: collections.deque[tuple[str, int]] = collections.deque()  # (encoded post, its size)
        self._seq = itertools.count(1)
        self._waiting: dict[int, list[Any]] = {}  # post id -> [lock held until the reply, reply]
        self._closed = post_replies is None  # the gateway closed the post-reply pipe: no reply will come
        self._reading = False  # the reader thread has been started
        self._reader_lock = threading.Lock()

    def send_line(self, data: bytes) -> None:
        self._lines.append(data + b"\n")
        self._flush(block=True)

    def _flush(self, block: bool) -> None:
        """Write everything queued; a thread that finds the pipe busy leaves its post to the writer.

        The writer looks at the queues again after releasing the lock, so a post queued just before
        the release is never stranded."""
        while self._lines or self._posts:
            if not self._write_lock.acquire(blocking=block):
                return
            try:
                while self._lines or self._posts:
                    data = memoryview(self._take())
                    while data:
                        data = data[self._out.write(data):]
            finally:
                self._write_lock.release()
            block = False

    def _take(self) -> bytes:
        """Queued lines, then one batch line of queued posts (at most BATCH_BYTES past the first)."""
        chunks = []
        while self._lines:
            chunks.append(self._lines.popleft())
        items, size = [], 0
        while self._posts and size < BATCH_BYTES:
            item, n = self._posts.popleft()
            items.append(item)
            size += n
        if items:
            chunks.append(b'{"posts":[' + ",".join(items).encode() + b"]}\n")
        return b"".join(chunks)

    def _start_reader(self) -> None:
        with self._reader_lock:
            if not self._reading and self._in is not None:
                threading.Thread(target=self._read, name=READER_THREAD, daemon=True).start()
                self._reading = True

    def _read(self) -> None:
        for line in self._in:
            for reply in json.loads(line)["post_replies"]:
                slot = self._waiting.pop(reply[0], None)
                if slot is not None:
                    slot[1] = reply
                    slot[0].release()
        self._closed = True  # EOF: the gateway is stopping (or died)
        for seq in list(self._waiting):
            slot = self._waiting.pop(seq, None)
            if slot is not None:
                slot[0].release()

    def post(self, connection_id: str, data: bytes) -> dict[str, Any]:
        """One PostToConnection through the gateway; its reply `{status, type, message}`."""
        if not self._reading:
            self._start_reader()
        seq = next(self._seq)
        done = threading.Lock()
        done.acquire()
        slot: list[Any] = [done, None]
        self._waiting[seq] = slot
        if self._closed:  # registered after the reader let every waiter go
            self._waiting.pop(seq, None)
            return {"status": 500, "type": "InternalServerError", "message": "the gateway is stopping"}
        try:
            item = json.dumps([seq, connection_id, data.decode("utf-8")])
        except UnicodeDecodeError:
            item = json.dumps([seq, connection_id, base64.b64encode(data).decode(), True])
        self._posts.append((item, len(item)))
        self._flush(block=False)
        done.acquire()
        reply = slot[1]
        if reply is None:
            return {"status": 500, "type": "InternalServerError", "message": "the gateway is stopping"}
        return {"status": reply[1], "type": reply[2], "message": reply[3]}


def _pipe_post_hook(channel: Channel) -> Callable[..., Any]:
    """botocore `before-call` handler: answer PostToConnection from the gateway over the pipe."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    def before_call(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        connection_id = unquote(params["url_path"].rsplit("/", 1)[-1])
        body = params.get("body") or b""
        data = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else body.read()
        reply = channel.post(connection_id, data)
        status = int(reply["status"])
        headers = HTTPHeaders()
        meta = {"RequestId": reply.get("request_id", ""), "HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}
        parsed: dict[str, Any] = {"ResponseMetadata": meta}
        if status >= 300:
            parsed["Error"] = {"Code": reply.get("type", ""), "Message": reply.get("message", "")}
            parsed["message"] = reply.get("message", "")
        return AWSResponse(params.get("url", ""), status, headers, None), parsed

    return before_call


def _patch_botocore(channel: Channel, prefix: str) -> None:
    """boto3 clients: PostToConnection to `prefix` answered over the pipe, before signing and HTTP.

    The hook goes on each `apigatewaymanagementapi` client for `prefix` as botocore creates it, and
    only there. Why not a wrapper of `BaseClient._make_api_call`, as before: every client of every
    service then ran through it, and a library that looks for wrappers of botocore's calls (the X-Ray
    SDK's kind) takes one for a hook into all of them. The layer's DynamoDB store does: it kept every
    call on botocore's whole per-call pipeline in `parley dev`, where Lambda sends them directly
    (`parley.aws.dynamodb_requests`). Installed as `botocore.client` is imported (`_after_import`),
    before any client can exist, so clients created at import time are covered too."""
    creator = sys.modules["botocore.client"].ClientCreator
    original = creator.create_client
    hook = _pipe_post_hook(channel)

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        if (client.meta.service_model.service_name == "apigatewaymanagementapi"
                and str(client.meta.endpoint_url).rstrip("/") == prefix):
            client.meta.events.register_first("before-call.apigatewaymanagementapi.PostToConnection", hook)
        return client

    creator.create_client = create_client


def _patch_urllib3(channel: Channel, prefix: str) -> None:
    """Plain HTTP clients on urllib3 (a hand-signed PostToConnection, `requests`): a POST to
    `prefix/@connections/{id}` is answered over the pipe with the status and `x-amzn-ErrorType`
    the HTTP route would send; every other request goes out as before.

    Both entry points: a PoolManager's (matched on the absolute URL before urllib3 parses it and
    picks a pool, ~0.15 ms of CPU per call) and a connection pool's (code that holds a pool)."""
    import io

    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.poolmanager import PoolManager
    from urllib3.response import HTTPResponse

    target = urlsplit(prefix)
    path_prefix = f"{target.path.rstrip('/')}/@connections/"
    url_prefix = f"{prefix}/@connections/"

    def answer(method: str, connection_id: str, body: Any, preload_content: bool) -> HTTPResponse:
        data = body if isinstance(body, bytes) else (body or "").encode() if isinstance(body, (str, type(None))) else body.read()
        reply = channel.post(unquote(connection_id), data)
        status = int(reply["status"])
        payload = b"" if status < 300 else json.dumps({"message": reply.get("message", "")}).encode()
        reply_headers = {"x-amzn-ErrorType": reply["type"]} if status >= 300 and reply.get("type") else {}
        return HTTPResponse(body=io.BytesIO(payload), headers=reply_headers, status=status, request_method=method,
                            preload_content=preload_content, decode_content=False)

    pool_urlopen = HTTPConnectionPool.urlopen

    def urlopen(pool: Any, method: str, url: str, body: Any = None, headers: Any = None, *args: Any, **kw: Any) -> Any:
        if (method != "POST" or pool.scheme != target.scheme or pool.host != target.hostname or pool.port != target.port
                or not urlsplit(url).path.startswith(path_prefix)):
            return pool_urlopen(pool, method, url, body, headers, *args, **kw)
        return answer(method, urlsplit(url).path[len(path_prefix):], body, kw.get("preload_content", True))

    manager_urlopen = PoolManager.urlopen

    def manager_post(manager: Any, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        if method != "POST" or not url.startswith(url_prefix) or "?" in url or "#" in url:
            return manager_urlopen(manager, method, url, redirect, **kw)
        return answer(method, url[len(url_prefix):], kw.get("body"), kw.get("preload_content", True))

    HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]
    PoolManager.urlopen = manager_post  # type: ignore[method-assign]


PIPE_AUTHORIZATION = "AWS4-HMAC-SHA256 Credential=parley-dev-pipe, SignedHeaders=host, Signature=not-needed-over-the-pipe"


def _patch_sigv4(_: Channel, prefix: str) -> None:
    """A hand-signed PostToConnection to `prefix` is answered over the pipe (`_patch_urllib3`), where no
    signature is read (the HTTP route accepts any, too): SigV4 signing, ~0.3 ms of CPU per post in a
    64-thread fan-out, is skipped for those requests only. The credentials must still exist (botocore's
    NoCredentialsError otherwise, as on AWS); every other request is signed as before."""
    from botocore.auth import SigV4Auth

    url_prefix = f"{prefix}/@connections/"
    original = SigV4Auth.add_auth

    def add_auth(auth: Any, request: Any) -> None:
        if auth.credentials is None or request.method != "POST" or not str(request.url).startswith(url_prefix):
            return original(auth, request)
        request.headers["Authorization"] = PIPE_AUTHORIZATION

    SigV4Auth.add_auth = add_auth  # type: ignore[method-assign]


def _patch_parley_signer(_: Channel, prefix: str) -> None:
    """Parley's layer signs its posts with a signer of its own (`parley.aws.signed_http.SigV4Signer`,
    cheaper than botocore's for a fan-out), which `_patch_sigv4` does not reach: as there, a POST to
    `prefix/@connections/` gets the pipe's placeholder instead of a signature. The last delivery of a
    message to 1,000 members fell to 0.90x (`benchmarks/peers_bench.py --rows room --repeat 7`, this
    tree against the one before, three alternated pairs; docs/benchmarks.md). The credentials are still read (an environment without any
    fails as the real signer does, as on AWS), and every other request (the Lambda Invoke of a
    fan-out's shards) is signed for real. `tests/gateway/test_gw_worker_pipe.py` imports the layer's
    class by name, so a rename there fails that test instead of quietly signing again."""
    signer = sys.modules["parley.aws.signed_http"].SigV4Signer
    original = signer.headers
    url_prefix = f"{prefix}/@connections/"

    def headers(self: Any, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> dict[str, str]:
        if method != "POST" or not url.startswith(url_prefix) or "?" in url or "#" in url:
            return original(self, method, url, body, headers)  # signed, or refused as the real signer refuses
        self._credentials.get_frozen_credentials()  # none: the real signer's AttributeError
        return {**(headers or {}), "Authorization": PIPE_AUTHORIZATION}

    signer.headers = headers


class _AfterImport:
    """A `sys.meta_path` finder that runs `action` on one module right after its code has run, once.

    Why at import and not before each invocation: a patch that waits for the first invocation misses
    what the handler's module built at import time (a module-level boto3 client).

    It stays in `sys.meta_path` (removing it would change the list under another thread's import) and
    asks the other finders itself, with the path it was given, so that `find_spec` imports nothing: a
    review found that importing the parent package from there could wait on another thread that is
    still importing it."""

    def __init__(self, name: str, action: Callable[[Any], None]) -> None:
        self.name, self.action = name, action
        self._wired = False
        self._lock = threading.Lock()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name or self._wired:
            return None
        spec = None
        for finder in list(sys.meta_path):
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        with self._lock:
            if self._wired:
                return spec
            self._wired = True
        run_module, name, action, ran = spec.loader.exec_module, self.name, self.action, []

        def exec_module(module: Any) -> None:
            run_module(module)
            if module.__name__ == name and not ran:  # a loader shared by many modules (a zip's) runs this for each
                ran.append(True)
                try:
                    action(module)
                except Exception as exc:  # noqa: BLE001 - the handler's import must not fail for the pipe
                    sys.stderr.write(f"[parley dev] posts to this gateway go over HTTP: patching {name} failed ({exc!r})\n")

        spec.loader.exec_module = exec_module
        return spec


def _after_import(name: str, action: Callable[[Any], None]) -> None:
    """Run `action` on module `name` once it is imported: now if it already is."""
    if name in sys.modules:
        action(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, action))


def route_posts_through_pipe(channel: Channel, connections_url: str) -> None:
    """Send PostToConnection calls to `connections_url` over the pipe, through whichever HTTP stacks
    the handler imports (botocore, urllib3), each patched as it is imported (or now, if it is).

    Patched at botocore's client factory and urllib3's classes, so clients and pools created at import
    or per invocation are covered; any other endpoint, operation or service goes over HTTP as before.
    Signing is skipped only for requests that urllib3 answers over the pipe (`_patch_sigv4`, and
    `_patch_parley_signer` for Parley's own signer): a request cannot be sent before urllib3 is
    imported, and so patched."""
    prefix = connections_url.rstrip("/")
    for module, patch in (("botocore.client", _patch_botocore), ("urllib3.poolmanager", _patch_urllib3),
                          ("botocore.auth", _patch_sigv4), ("parley.aws.signed_http", _patch_parley_signer)):
        _after_import(module, lambda _module, patch=patch: patch(channel, prefix))


def _syntax_error(module_name: str, exc: SyntaxError) -> dict[str, Any]:
    """Lambda's answer to a module that does not compile: `Runtime.UserCodeSyntaxError`."""
    where = f"{os.path.basename(exc.filename or '')}, line {exc.lineno}"
    err = _error(exc, "Runtime.UserCodeSyntaxError")
    err["errorMessage"] = f"Syntax error in module '{module_name}': {exc.msg} ({where})"
    err["stackTrace"] = [f'  File "{exc.filename}" Line {exc.lineno}\n    {(exc.text or "").strip()}\n']
    return err


class _CurrentSourceLoader(import_machinery.SourceFileLoader):
    """A module of the function's code or its layers: its cached bytecode (`__pycache__`) is used only
    when compiled from the source as it is now (a hash of it), not when the source's size and
    modification time in whole seconds match, as Python's default check has it. A second save of the
    same size within the second of a save a cold start compiled (a quick fix, a revert) passes that
    check: every later environment would run the earlier save, though the gateway reloaded for the
    later one. Its bytecode is cached as a checked hash-based `.pyc`, which Python itself reads right."""

    def get_code(self, fullname: str) -> Any:
        source_path = self.get_filename(fullname)
        source = self.get_data(source_path)
        source_hash = import_util.source_hash(source)
        try:
            cached = import_util.cache_from_source(source_path)
        except NotImplementedError:
            cached = None
        if cached is not None:
            try:
                data = self.get_data(cached)
            except OSError:
                data = b""
            if data[:4] == import_util.MAGIC_NUMBER and data[4] & 1 and data[8:16] == source_hash:  # hash-based, of this source
                try:
                    code = marshal.loads(memoryview(data)[16:])
                except (EOFError, ValueError, TypeError):
                    pass
                else:  # compiled where the file was then: tracebacks name where it is now, as the standard loader's do
                    _imp._fix_co_filename(code, source_path)
                    return code
        code = self.source_to_code(source, source_path)
        if cached is not None and not sys.dont_write_bytecode:
            flags = (0b11).to_bytes(4, "little")  # hash-based, checked against the source
            self.set_data(cached, import_util.MAGIC_NUMBER + flags + source_hash + marshal.dumps(code))
        return code


INSTALLED = ("site-packages", "dist-packages")  # a virtualenv's or a distribution's packages, wherever they are


def _current_source_hook(roots: list[str], unwatched: list[str]) -> Callable[[str], Any]:
    """A `sys.path_hooks` entry: folders under `roots` (the code and the layers) import with
    `_CurrentSourceLoader`; any other folder (the standard library, site-packages) as before, and so do
    folders under a root that the gateway does not watch (`unwatched`: a `.venv` in a `CodeUri: .`),
    whose installed packages' timestamp-based caches stay valid."""
    finder = import_machinery.FileFinder.path_hook(
        (import_machinery.ExtensionFileLoader, import_machinery.EXTENSION_SUFFIXES),
        (_CurrentSourceLoader, import_machinery.SOURCE_SUFFIXES),
        (import_machinery.SourcelessFileLoader, import_machinery.BYTECODE_SUFFIXES),
    )
    prefixes = [os.path.abspath(root).rstrip(os.sep) + os.sep for root in roots]
    skipped = {*unwatched, *INSTALLED}

    def hook(path: str) -> Any:
        where = os.path.abspath(path or ".")  # a relative entry (sys.path.append("vendor")) is under the working folder
        inside = next((p for p in prefixes if where == p[:-1] or where.startswith(p)), None)
        if inside is None or skipped.intersection(where[len(inside):].split(os.sep)):
            raise ImportError("not the function's code")  # the next hook finds it
        return finder(path)

    return hook


class _MalformedHandler(Exception):
    """A Handler without a module part (`handler` for `app.handler`): Lambda's `Runtime.MalformedHandlerName`."""


def _exit_with_parent(parent: int) -> None:
    """A worker busy in a handler never reads the EOF a dead gateway leaves: leave when orphaned."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def main() -> None:
    # Ctrl-C in a terminal (or SIGTERM from a service manager) signals the whole process group: the
    # gateway must stay able to run `$disconnect` handlers while it shuts down, so the execution
    # environment ignores both; it exits when the gateway closes its stdin, or when the gateway dies.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # spawned with both blocked (child_processes.stop_signals_blocked)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    cfg = json.loads(sys.argv[1])
    ipc_in = os.fdopen(os.dup(0), "rb", buffering=REQUEST_BUFFER)
    ipc_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # the handler's prints join its stderr stream
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    sys.path_hooks.insert(0, _current_source_hook(cfg["sys_path"], cfg.get("unwatched_dirs", [])))
    for path in reversed(cfg["sys_path"]):
        sys.path.insert(0, path)
    try:
        os.chdir(cfg["code_dir"])
    except OSError:  # gone (a rename, a `git checkout` under way): the import below fails as Lambda's would
        pass

    replies_fd = cfg.get("post_replies_fd")
    if replies_fd is not None:
        os.set_inheritable(replies_fd, False)  # the handler's own child processes get none of the IPC pipes
    channel = Channel(None if replies_fd is None else os.fdopen(replies_fd, "rb"), ipc_out)

    def send(msg: dict[str, Any]) -> None:
        try:
            data = _REPLY_ENCODER.encode(msg)
        except (TypeError, ValueError) as exc:
            err = _error(exc, "Runtime.MarshalError")
            err["errorMessage"] = f"Unable to marshal response: {exc}"
            _log_error(err)
            err.pop("_traceback", None)  # the console's copy only, as for a handler's error
            data = json.dumps({"id": msg.get("id"), "error": err})
        channel.send_line(data.encode())

    handler = None
    init_error: dict[str, Any] | None = None
    connections_url = cfg.get("connections_url")
    if connections_url:  # before the handler's import: its module-level clients are covered too
        route_posts_through_pipe(channel, connections_url)
    module_name, _, func_name = cfg["handler"].rpartition(".")
    try:
        if not module_name:
            raise _MalformedHandler(f"Bad handler '{cfg['handler']}': not enough values to unpack (expected 2, got 1)")
        module = importlib.import_module(module_name.replace("/", "."))  # `dir/app.handler`, as Lambda's runtime reads it
    except _MalformedHandler as exc:
        init_error = _error(exc, "Runtime.MalformedHandlerName")
    except SyntaxError as exc:
        init_error = _syntax_error(module_name, exc)
    except ImportError as exc:
        init_error = _error(exc, "Runtime.ImportModuleError")
        init_error["errorMessage"] = f"Unable to import module '{module_name}': {exc}"
    except Exception as exc:  # noqa: BLE001 - any init failure is reported like Lambda does (an AttributeError too)
        init_error = _error(exc)
    else:
        try:  # only a module without the handler is Runtime.HandlerNotFound, not an AttributeError its code raised
            handler = getattr(module, func_name)
        except AttributeError as exc:
            init_error = _error(exc, "Runtime.HandlerNotFound")
            init_error["errorMessage"] = f"Handler '{func_name}' missing on module '{module_name}'"
    if init_error is not None:
        _log_error(init_error)
        init_error.pop("_traceback", None)
        send({"init_error": init_error})
        return
    send({"ready": True})

    while True:
        line = ipc_in.readline()
        if not line:  # the gateway is stopping (or died): leave now, as Lambda ends an environment,
            # without the interpreter's teardown of boto3 & co (~0.1-0.3 s of CPU per worker, dozens at once)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(0)
        req = read_request(line)
        os.environ["_X_AMZN_TRACE_ID"] = req.get("trace_id", "")
        ctx = LambdaContext(cfg, req["request_id"], req["deadline_ms"])
        try:
            result = handler(req["event"], ctx)
            reply: dict[str, Any] = {"id": req["id"], "result": result}
        except Exception as exc:  # noqa: BLE001 - a handler error is an invocation result
            err = _error(exc, skip_frames=1)
            _log_error(err)
            err.pop("_traceback", None)
            reply = {"id": req["id"], "error": err}
        send(reply)


if __name__ == "__main__":
    main()

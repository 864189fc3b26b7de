"""The Lambda worker entry point: one execution environment that imports a handler once, then serves invocations one at a time.

Run by `worker_pool` as `python -I worker_main.py CONFIG_JSON` (stdlib
only, executed by path, so nothing of the gateway leaks onto the handler's
sys.path). The IPC channel is newline-delimited JSON: requests on the
original stdin, replies on the original stdout. The handler's own stdout and
stderr both go to this process's stderr, which the gateway forwards to its
console with the function name as prefix (Lambda sends both to CloudWatch).

`@connections` over the same pipe: a handler's `PostToConnection` to this gateway's own endpoint
still goes through its client (boto3: parameter validation, serialization, the client's
exceptions; or a hand-signed urllib3 POST), but the worker hands the request to the gateway as
one JSON line instead of an HTTP request (botocore's `before-call` hook, before signing; or at
urllib3's connection pool): no TCP round trip, no aiohttp request in the gateway. Profiling showed
those costs ~1 ms of CPU per post, so fan-out to 1,000 took a second of CPU in HTTP alone. The
gateway answers with the status the HTTP API would give (200, 410 Gone, 413, 429).
"""

from __future__ import annotations

import base64
import decimal
import importlib
import itertools
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
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


class Channel:
    """The pipe to the gateway: invocation requests in, replies and `@connections` posts out.

    A reader thread splits what arrives: answers to posts wake the handler thread that waits for
    them (a fan-out posts from many threads at once); invocation requests queue for the main loop.
    """

    def __init__(self, ipc_in: Any, ipc_out: Any) -> None:
        self._in, self._out = ipc_in, ipc_out
        self._write_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._waiting: dict[int, list[Any]] = {}  # post id -> [Event, reply]
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, name="gateway-pipe", daemon=True).start()

    def send_line(self, data: bytes) -> None:
        with self._write_lock:
            self._out.write(data + b"\n")

    def _read(self) -> None:
        for line in self._in:
            msg = json.loads(line)
            if "post_reply" in msg:
                slot = self._waiting.pop(msg["post_reply"], None)
                if slot is not None:
                    slot[1] = msg
                    slot[0].set()
            else:
                self.requests.put(msg)
        self.requests.put(None)  # EOF: the gateway is stopping (or died)
        for slot in list(self._waiting.values()):
            slot[0].set()

    def post(self, connection_id: str, data: bytes) -> dict[str, Any]:
        """One PostToConnection through the gateway; its reply `{status, type, message}`."""
        seq = next(self._seq)
        slot: list[Any] = [threading.Event(), None]
        self._waiting[seq] = slot
        msg: dict[str, Any] = {"post": seq, "connection_id": connection_id}
        try:
            msg["data"] = data.decode("utf-8")
        except UnicodeDecodeError:
            msg["data_b64"] = base64.b64encode(data).decode()
        self.send_line(json.dumps(msg).encode())
        slot[0].wait()
        return slot[1] or {"status": 500, "type": "InternalServerError", "message": "the gateway is stopping"}


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
    """boto3 clients: PostToConnection to `prefix` answered over the pipe, before signing and HTTP."""
    base = sys.modules["botocore.client"].BaseClient
    original = base._make_api_call
    hook = _pipe_post_hook(channel)

    def make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if operation_name == "PostToConnection" and not getattr(client, "_parley_pipe", False):
            client._parley_pipe = True
            if str(client.meta.endpoint_url).rstrip("/") == prefix:
                client.meta.events.register_first("before-call.apigatewaymanagementapi.PostToConnection", hook)
        return original(client, operation_name, api_params)

    base._make_api_call = make_api_call


def _patch_urllib3(channel: Channel, prefix: str) -> None:
    """Plain HTTP clients on urllib3 (a hand-signed PostToConnection, `requests`): a POST to
    `prefix/@connections/{id}` is answered over the pipe with the status and `x-amzn-ErrorType`
    the HTTP route would send; every other request goes out as before."""
    import io

    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import HTTPResponse

    target = urlsplit(prefix)
    path_prefix = f"{target.path.rstrip('/')}/@connections/"
    original = HTTPConnectionPool.urlopen

    def urlopen(pool: Any, method: str, url: str, body: Any = None, headers: Any = None, *args: Any, **kw: Any) -> Any:
        if (method != "POST" or pool.scheme != target.scheme or pool.host != target.hostname or pool.port != target.port
                or not urlsplit(url).path.startswith(path_prefix)):
            return original(pool, method, url, body, headers, *args, **kw)
        data = body if isinstance(body, bytes) else (body or "").encode() if isinstance(body, (str, type(None))) else body.read()
        reply = channel.post(unquote(urlsplit(url).path[len(path_prefix):]), data)
        status = int(reply["status"])
        payload = b"" if status < 300 else json.dumps({"message": reply.get("message", "")}).encode()
        reply_headers = {"x-amzn-ErrorType": reply["type"]} if status >= 300 and reply.get("type") else {}
        return HTTPResponse(body=io.BytesIO(payload), headers=reply_headers, status=status, request_method=method,
                            preload_content=kw.get("preload_content", True), decode_content=False)

    HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]


def route_posts_through_pipe(channel: Channel, connections_url: str, done: set[str]) -> bool:
    """Send PostToConnection calls to `connections_url` over the pipe, through whichever HTTP stacks
    the handler has imported (botocore, urllib3); True once both are patched (`done` remembers which).

    Patched at the class, so clients created before or after (at import or per invocation) are covered;
    any other endpoint, operation or service goes over HTTP as before.
    """
    prefix = connections_url.rstrip("/")
    for module, patch in (("botocore.client", _patch_botocore), ("urllib3.connectionpool", _patch_urllib3)):
        if module not in done and module in sys.modules:
            patch(channel, prefix)
            done.add(module)
    return len(done) == 2


def _syntax_error(module_name: str, exc: SyntaxError) -> dict[str, Any]:
    """Lambda's answer to a module that does not compile: `Runtime.UserCodeSyntaxError`."""
    where = f"{os.path.basename(exc.filename or '')}, line {exc.lineno}"
    err = _error(exc, "Runtime.UserCodeSyntaxError")
    err["errorMessage"] = f"Syntax error in module '{module_name}': {exc.msg} ({where})"
    err["stackTrace"] = [f'  File "{exc.filename}" Line {exc.lineno}\n    {(exc.text or "").strip()}\n']
    return err


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
    ipc_in = os.fdopen(os.dup(0), "rb")
    ipc_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # the handler's prints join its stderr stream
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    for path in reversed(cfg["sys_path"]):
        sys.path.insert(0, path)
    os.chdir(cfg["code_dir"])

    channel = Channel(ipc_in, ipc_out)

    def send(msg: dict[str, Any]) -> None:
        try:
            data = json.dumps(msg, default=_json_default)
        except (TypeError, ValueError) as exc:
            err = _error(exc, "Runtime.MarshalError")
            err["errorMessage"] = f"Unable to marshal response: {exc}"
            _log_error(err)
            data = json.dumps({"id": msg.get("id"), "error": err})
        channel.send_line(data.encode())

    handler = None
    init_error: dict[str, Any] | None = None
    module_name, _, func_name = cfg["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, func_name)
    except SyntaxError as exc:
        init_error = _syntax_error(module_name, exc)
    except ImportError as exc:
        init_error = _error(exc, "Runtime.ImportModuleError")
        init_error["errorMessage"] = f"Unable to import module '{module_name}': {exc}"
    except AttributeError as exc:
        init_error = _error(exc, "Runtime.HandlerNotFound")
        init_error["errorMessage"] = f"Handler '{func_name}' missing on module '{module_name}'"
    except Exception as exc:  # noqa: BLE001 - any init failure is reported like Lambda does
        init_error = _error(exc)
    if init_error is not None:
        _log_error(init_error)
        init_error.pop("_traceback", None)
        send({"init_error": init_error})
        return
    send({"ready": True})
    connections_url = cfg.get("connections_url")
    piped = not connections_url
    patched: set[str] = set()

    while True:
        req = channel.requests.get()
        if req is None:  # the gateway is stopping (or died): leave now, as Lambda ends an environment,
            # without the interpreter's teardown of boto3 & co (~0.1-0.3 s of CPU per worker, dozens at once)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(0)
        if not piped:  # botocore may be imported only now, by the handler's first invocation
            piped = route_posts_through_pipe(channel, connections_url, patched)
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
        if not piped:
            piped = route_posts_through_pipe(channel, connections_url, patched)


if __name__ == "__main__":
    main()

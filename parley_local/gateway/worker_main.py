"""The Lambda worker entry point: one execution environment that imports a handler once, then serves invocations one at a time.

Run by `worker_pool` as `python -I worker_main.py CONFIG_JSON` (stdlib
only, executed by path, so nothing of the gateway leaks onto the handler's
sys.path). The IPC channel is newline-delimited JSON: requests on the
original stdin, replies on the original stdout. The handler's own stdout and
stderr both go to this process's stderr, which the gateway forwards to its
console with the function name as prefix (Lambda sends both to CloudWatch).
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any


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

    def send(msg: dict[str, Any]) -> None:
        try:
            data = json.dumps(msg, default=_json_default)
        except (TypeError, ValueError) as exc:
            err = _error(exc, "Runtime.MarshalError")
            err["errorMessage"] = f"Unable to marshal response: {exc}"
            _log_error(err)
            data = json.dumps({"id": msg.get("id"), "error": err})
        ipc_out.write(data.encode() + b"\n")

    handler = None
    init_error: dict[str, Any] | None = None
    module_name, _, func_name = cfg["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, func_name)
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
        req = json.loads(line)
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

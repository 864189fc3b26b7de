"""Lambda's `Invoke` API (botocore `lambda`), served on the gateway's own port.

Why: a handler that hands work to another function (Parley's sharded fan-out invokes
`FanoutFunction` with `InvocationType=Event`) must run the same code locally as on AWS. Workers
get `AWS_ENDPOINT_URL_LAMBDA` pointing here, so their unchanged boto3 client reaches the local
function's worker pool. The function is named as the template names it (the name `!Ref` gives,
its ARN, or a partial ARN), as on AWS.

Asynchronous invocations behave like Lambda's event queue: 202 at once, the event runs in the
background, a failed run (error or timeout) is retried twice, and one that still fails is
reported loudly on the console, where AWS would send it to the function's on-failure
destination. Lambda waits about 1 and then 2 minutes between attempts; here the waits are
`retry_delays_s` (short, so a developer sees the outcome). Signatures are accepted without
verification.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Mapping

from aiohttp import web

from .connections_api import error_response
from .console import Console
from .events import aws_id
from .integration import BackgroundTasks, status_text
from .template import FunctionSpec
from .environment import Invocation
from .worker_pool import LambdaRuntime

INVOKE_PATH = "/2015-03-31/functions/{function}/invocations"
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024  # RequestResponse request payload quota
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024  # Event payload quota (256 KB before October 2025)
ASYNC_RETRIES = 2  # Lambda's default MaximumRetryAttempts for asynchronous invocation
DEFAULT_RETRY_DELAYS_S = (1.0, 2.0)

# name | arn:aws:lambda:region:account:function:name[:qualifier] | account:function:name[:qualifier]
_FUNCTION_ARN = re.compile(r"^(?:arn:aws[\w-]*:lambda:[\w-]+:)?(?:\d{12}:)?(?:function:)?([A-Za-z0-9_-]+)(?::([\w$-]+))?$")


def resolve_function(identifier: str, specs: Mapping[str, FunctionSpec]) -> FunctionSpec | None:
    """The function an Invoke names: by its deployed name (what `!Ref` gives) or logical id, bare or in an ARN."""
    m = _FUNCTION_ARN.match(identifier)
    if m is None or m.group(2) not in (None, "$LATEST"):
        return None
    name = m.group(1)
    by_name = {spec.name: spec for spec in specs.values()}
    return by_name.get(name) or specs.get(name)


class LambdaInvokeApi:
    """Handler for `POST /2015-03-31/functions/{FunctionName}/invocations`."""

    def __init__(self, runtime: LambdaRuntime, tasks: BackgroundTasks, console: Console,
                 retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S):
        self.runtime = runtime
        self.tasks = tasks
        self.console = console
        self.retry_delays_s = retry_delays_s
        self.failed_events: list[dict[str, Any]] = []  # what AWS would send to the on-failure destination

    def _specs(self) -> dict[str, FunctionSpec]:
        """The current template's functions (a redeploy replaces the pools)."""
        return {lid: pool.spec for lid, pool in self.runtime.pools.items()}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(INVOKE_PATH, self._invoke)

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        identifier = request.match_info["function"]
        if request.query.get("Qualifier") not in (None, "$LATEST"):
            identifier += ":" + request.query["Qualifier"]
        spec = resolve_function(identifier, self._specs())
        if spec is None:
            return error_response(404, "ResourceNotFoundException", f"Function not found: {identifier}")
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return error_response(400, "InvalidParameterValueException", f"Unsupported InvocationType: {kind}")
        body = await request.read()
        limit = MAX_ASYNC_PAYLOAD_BYTES if kind == "Event" else MAX_SYNC_PAYLOAD_BYTES
        if len(body) > limit:
            return error_response(413, "RequestEntityTooLargeException",
                                  f"Request must be smaller than {limit} bytes for the {kind} invocation type")
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            return error_response(400, "InvalidRequestContentException", "Could not parse request body into json")
        request_id = aws_id()
        headers = {"x-amzn-RequestId": request_id}
        if kind == "DryRun":
            return web.Response(status=204, headers=headers)
        if kind == "Event":
            self.tasks.spawn(self._run_async(spec, event, request_id))
            return web.Response(status=202, headers=headers)
        inv = await self._run(spec, kind, event, request_id)
        headers["X-Amz-Executed-Version"] = "$LATEST"
        if not inv.ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
            return web.Response(status=200, body=json.dumps(inv.error).encode(), content_type="application/json", headers=headers)
        return web.Response(status=200, body=json.dumps(inv.result).encode(), content_type="application/json", headers=headers)

    async def _run(self, spec: FunctionSpec, kind: str, event: Any, request_id: str) -> Invocation:
        """One invocation, logged like a route's: the function in place of the route, the invocation type in place of the connection."""
        inv = await self.runtime.invoke(spec.logical_id, event, request_id)
        self.console.invocation(spec.logical_id, f"Invoke {kind}", inv.duration_ms, status_text(inv), inv.init_ms)
        return inv

    async def _run_async(self, spec: FunctionSpec, event: Any, request_id: str) -> None:
        """One queued event: the first attempt, then up to `ASYNC_RETRIES` more after a failure."""
        inv: Invocation | None = None
        for attempt in range(ASYNC_RETRIES + 1):
            if attempt:
                await asyncio.sleep(self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1])
            inv = await self._run(spec, "Event", event, request_id)
            if inv.ok:
                return
            self.console.line(f"[{spec.logical_id}] asynchronous invocation {request_id} failed "
                              f"(attempt {attempt + 1} of {ASYNC_RETRIES + 1}): {_reason(inv)}")
        assert inv is not None
        self.failed_events.append({"requestContext": {"requestId": request_id, "functionArn": spec.arn,
                                                      "condition": "RetriesExhausted", "approximateInvokeCount": ASYNC_RETRIES + 1},
                                   "requestPayload": event, "responsePayload": inv.error})
        self.console.line(f"!!! [{spec.logical_id}] asynchronous invocation {request_id} FAILED after {ASYNC_RETRIES + 1} attempts "
                          f"({_reason(inv)}): the event is dropped here; on AWS it goes to the function's on-failure destination")


def _reason(inv: Invocation) -> str:
    if inv.timed_out:
        return "timed out"
    error = inv.error or {}
    return f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"

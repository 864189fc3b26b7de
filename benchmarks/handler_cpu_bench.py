"""CPU of one warm invocation of the handshake handlers and of the shared Lambda wrapper, in-process.

Every handshake through `parley dev` (and every connection on AWS) runs the authorizer and then
`$connect`; every frame runs the wrapper `lambda_routes` puts around each route. This times them
as Lambda runs them warm: the real `functions/<name>/app.py` in this process, against AWS's
DynamoDB Local (a JVM child process, so its CPU is not counted), the JWT secret from an SSM
stand-in (`parley_local.local_aws.parameter_store`, on a thread), the template's defaults
(POWERTOOLS_TRACE_DISABLED=true, POWERTOOLS_LOG_LEVEL=INFO, metrics on), each log line written
to /dev/null as Lambda's runtime would take it off stdout.

Per handler: `--warmup` calls, then `--calls` timed ones; the figure is this process's CPU
(time.process_time, all threads) per call, in microseconds, and the wall time per call. The
handlers: the authorizer (a valid HS256 token, an allowed Origin), `$connect` (a PutItem),
`ping` (no DynamoDB call), and `$disconnect` of a connection in no room. `--profile NAME` prints
cProfile's top functions for that handler instead.

    .venv/bin/python benchmarks/handler_cpu_bench.py [--calls 500] [--warmup 100] [--profile connect]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from typing import Any, Callable

from parley_testing.functions import LambdaContext, import_the_layer

import_the_layer()

SECRET_PARAMETER = "/parley/bench/jwt-secret"
ORIGIN = "https://chat.example.com"
os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_SESSION_TOKEN="bench",
    AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    CONNECTIONS_TABLE="bench-ConnectionsTable", MEMBERSHIPS_TABLE="bench-MembershipsTable",
    MESSAGES_TABLE="bench-MessagesTable", IDEMPOTENCY_TABLE="bench-IdempotencyTable",
    POWERTOOLS_SERVICE_NAME="parley", POWERTOOLS_METRICS_NAMESPACE="Parley",
    POWERTOOLS_LOG_LEVEL=os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"), POWERTOOLS_TRACE_DISABLED="true",
    JWT_SECRET_PARAMETER=SECRET_PARAMETER, ALLOWED_ORIGINS=ORIGIN,
    AWS_LAMBDA_FUNCTION_NAME="bench",
)


class SsmStandIn:
    """The gateway's own SSM Parameter Store, served on a thread on a free 127.0.0.1 port."""

    def __init__(self, secret: str) -> None:
        from aiohttp import web

        from parley_local.local_aws.parameter_store import ParameterStore

        store = ParameterStore()
        store.put(SECRET_PARAMETER, secret, "SecureString")
        app = web.Application()

        async def not_ssm(request: web.Request) -> web.StreamResponse:
            return web.json_response({"message": "only SSM here"}, status=400)

        store.add_routes(app, not_ssm)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the SSM stand-in did not start")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)


def measure(call: Callable[[int], Any], warmup: int, calls: int) -> tuple[float, float]:
    """(CPU us, wall us) per call over `calls` calls, after `warmup` untimed ones."""
    for n in range(warmup):
        call(n)
    if not calls:
        return 0.0, 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for n in range(warmup, warmup + calls):
        call(n)
    return (time.process_time() - cpu0) / calls * 1e6, (time.perf_counter() - wall0) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--profile", choices=["authorizer", "connect", "ping", "disconnect"])
    parser.add_argument("--rounds", type=int, default=1, help="measure every handler this many times, interleaved")
    args = parser.parse_args()

    from parley_local.local_aws.account import aws_client
    from parley_local.local_aws.dynamodb_local import DynamoDBLocal
    from parley_testing.lambda_events import JWT_SECRET, connect_event, connection_id, disconnect_event, jwt_token, message_event
    from parley_testing.template import create_tables_from_template, load_template

    ddb_local = DynamoDBLocal.start()
    ssm = SsmStandIn(JWT_SECRET)
    real_stdout = sys.stdout
    try:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb_local.endpoint
        os.environ["AWS_ENDPOINT_URL_SSM"] = ssm.url
        names = {logical: f"bench-{logical}" for logical in ("ConnectionsTable", "MembershipsTable", "MessagesTable", "IdempotencyTable")}
        create_tables_from_template(aws_client("dynamodb", ddb_local.endpoint), load_template(), names)

        sys.stdout = open(os.devnull, "w")  # the log lines: the Logger's handler writes to sys.stdout as it is at import
        from parley_testing.functions import load_function

        functions = {name: load_function(name) for name in ("authorizer", "connect", "ping", "disconnect")}
        token = jwt_token({"exp": int(time.time()) + 3600})
        authorizer_event = {
            "type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/test/$connect",
            "headers": {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com", "Origin": ORIGIN, "Sec-WebSocket-Version": "13"},
            "queryStringParameters": {"token": token},
        }
        ping = message_event(connection_id(0), "alice", {"type": "ping"}, route_key="ping", name="Alice")
        batch = [0]  # each round connects and disconnects connections of its own

        def cid(n: int) -> str:
            return f"bench{batch[0]:03d}-{n:06d}="

        def invoke(name: str, event: dict[str, Any]) -> dict[str, Any]:
            return functions[name].lambda_handler(event, LambdaContext(function_name=name))

        handlers: dict[str, Callable[[int], Any]] = {
            "authorizer": lambda n: invoke("authorizer", authorizer_event),
            "connect": lambda n: invoke("connect", connect_event(cid(n), "alice", "Alice")),
            "ping": lambda n: invoke("ping", ping),
            "disconnect": lambda n: invoke("disconnect", disconnect_event(cid(n), "alice")),
        }
        assert invoke("authorizer", authorizer_event)["policyDocument"]["Statement"][0]["Effect"] == "Allow"

        if args.profile:
            for name in ("connect", "disconnect") if args.profile == "disconnect" else (args.profile,):
                measure(handlers[name], args.warmup, 0)
            profile = cProfile.Profile(time.process_time)  # CPU, not wall: waiting on DynamoDB Local is not the handler's cost
            profile.enable()
            for n in range(args.warmup, args.warmup + args.calls):
                if args.profile == "disconnect":
                    profile.disable()
                    handlers["connect"](n)
                    profile.enable()
                handlers[args.profile](n)
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(40)
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
            print(out.getvalue(), file=real_stdout)
            return

        results: dict[str, list[tuple[float, float]]] = {name: [] for name in handlers}
        for _ in range(args.rounds):
            for name, call in handlers.items():  # disconnect after connect: it removes those connections
                results[name].append(measure(call, args.warmup, args.calls))
            batch[0] += 1
        print(f"{'handler':<12}{'CPU us/call':>14}{'wall us/call':>14}   ({args.calls} warm calls after {args.warmup}, "
              f"median of {args.rounds} round(s))", file=real_stdout)
        for name, figures in results.items():
            cpu = sorted(f[0] for f in figures)[len(figures) // 2]
            wall = sorted(f[1] for f in figures)[len(figures) // 2]
            print(f"{name:<12}{cpu:>14.0f}{wall:>14.0f}", file=real_stdout)
    finally:
        sys.stdout = real_stdout
        ssm.stop()
        ddb_local.stop()


if __name__ == "__main__":
    main()

"""CPU of one warm invocation of the handshake handlers, of the shared Lambda wrapper and of a fan-out shard.

Every handshake through `parley dev` (and every connection on AWS) runs the authorizer and then
`$connect`; every frame runs the wrapper `parley.aws.observability` puts around each route. This times them
as Lambda runs them warm: the real `functions/<name>/app.py` in a process of their own, against
AWS's DynamoDB Local (a JVM, so its CPU is not counted), the JWT secret from the gateway's SSM
stand-in (`parley_local.local_aws.parameter_store`, on a thread here), with the template's defaults
(POWERTOOLS_TRACE_DISABLED=true, POWERTOOLS_LOG_LEVEL=INFO, metrics on) and the log lines written to
/dev/null, as Lambda's runtime takes them off stdout.

The handlers: the authorizer (a valid HS256 token, an allowed Origin), `$connect` (no DynamoDB call),
`ping` (no DynamoDB call: the wrapper, the parse and the reply), `$disconnect` of a connection
in no room, and `fanout_shard`: the fan-out function on one shard of a large room's broadcast
(`SHARD_RECIPIENTS` connections: the claims in DynamoDB, then a signed PostToConnection each to
a stand-in `@connections` in a process of its own that answers 200 at once, over real HTTP).
`chat_message` is one message to a room of `ROOM_MEMBERS` (its three DynamoDB calls, every fifth
message the rate counter's, and a post to each member), and `join_leave` one connection joining a room
and leaving it (the join's and the leave's calls, with their replies and presence posts). The figure is the handler process's CPU (time.process_time) per call, in microseconds:
each round runs every handler `--calls` times after a short warm-up, and the median round is shown.

This machine is shared, so absolute figures drift with its load. `--baseline DIR` (another checkout,
e.g. `git archive <commit> | tar -x -C DIR`) runs that tree's handlers in a second process at the
same time, the two taking rounds in turn, and prints the median of the per-round ratios: a change's
effect measured in the same run. `--profile NAME` prints cProfile's top functions (CPU time) for
one handler of this tree instead.

    .venv/bin/python benchmarks/handler_cpu_bench.py [--rounds 12] [--calls 150] [--baseline DIR] [--profile connect]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from parley_testing.functions import LambdaContext, import_the_layer
from parley_testing.template import ROOT

import_the_layer()

HANDLERS = ("authorizer", "connect", "ping", "disconnect", "fanout_shard", "chat_message", "join_leave")
ROOM_MEMBERS = 5  # chat_message's room: the sender and four others
SHARD_RECIPIENTS = 100  # the template's FanoutShardSize
TAG_DIGITS = {"this": "1", "baseline": "2", "profile": "3"}  # each tree's deliveries apart
SECRET_PARAMETER = "/parley/bench/jwt-secret"
ORIGIN = "https://chat.example.com"
# ConnectionsTable: only for a `--baseline` tree from before `$connect` stopped writing one.
TABLES = {logical: f"bench-{logical}" for logical in ("ConnectionsTable", "MembershipsTable", "MessagesTable", "IdempotencyTable")}
os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_SESSION_TOKEN="bench",
    AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    CONNECTIONS_TABLE=TABLES["ConnectionsTable"], MEMBERSHIPS_TABLE=TABLES["MembershipsTable"],
    MESSAGES_TABLE=TABLES["MessagesTable"], IDEMPOTENCY_TABLE=TABLES["IdempotencyTable"],
    POWERTOOLS_SERVICE_NAME="parley", POWERTOOLS_METRICS_NAMESPACE="Parley",
    POWERTOOLS_LOG_LEVEL=os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"), POWERTOOLS_TRACE_DISABLED="true",
    JWT_SECRET_PARAMETER=SECRET_PARAMETER, ALLOWED_ORIGINS=ORIGIN, AWS_LAMBDA_FUNCTION_NAME="bench",
    # Every timed message and join is accepted: a refusal costs less and would flatter the figure.
    # The counters are still written every CHAT_RATE_BATCH-th / JOIN_RATE_BATCH-th frame, as deployed.
    CHAT_RATE_LIMIT="1000000000", JOIN_RATE_LIMIT="1000000000",
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
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", 0).start())
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the SSM stand-in did not start")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)


def measure(call: Callable[[int], Any], first: int, warmup: int, calls: int) -> float:
    """CPU us per call of `call(n)` for n in `first + warmup ...`, after `warmup` untimed calls."""
    for n in range(first, first + warmup):
        call(n)
    started = time.process_time()
    for n in range(first + warmup, first + warmup + calls):
        call(n)
    return (time.process_time() - started) / max(calls, 1) * 1e6


def shard_event(tag: str, n: int) -> dict[str, Any]:
    """The n-th shard of a broadcast of its own (a fresh delivery id: no claim is already taken)."""
    recipients = [[f"{tag}-r{i:04d}=", f"user{i}"] for i in range(SHARD_RECIPIENTS)]
    frame = json.dumps({"type": "chat_message", "data": {"roomId": "bench", "message": "hello, everyone", "user": "alice"}})
    delivery = f"01K{TAG_DIGITS.get(tag, '9')}{n:022d}"
    return {"roomId": "bench", "deliveryId": delivery, "shard": 0, "frame": frame, "recipients": recipients}


def handler_calls(tag: str) -> dict[str, Callable[[int], Any]]:
    """Each handler as `call(n)`; `$disconnect`'s n-th call is for `$connect`'s n-th connection.
    The Logger writes to sys.stdout as it is when `parley` is imported: point it at /dev/null first."""
    from parley_testing.functions import load_function
    from parley_testing.lambda_events import JWT_SECRET, connect_event, connection_id, disconnect_event, jwt_token, message_event

    functions = {name: load_function(name) for name in ("authorizer", "connect", "ping", "disconnect", "fanout",
                                                        "chat_message", "join_room", "leave_room")}
    token = jwt_token({"exp": int(time.time()) + 3600}, key=JWT_SECRET)
    authorizer_event = {
        "type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/test/$connect",
        "headers": {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com", "Origin": ORIGIN, "Sec-WebSocket-Version": "13"},
        "queryStringParameters": {"token": token},
    }
    ping = message_event(connection_id(0), "alice", {"type": "ping"}, route_key="ping", name="Alice")

    def invoke(name: str, event: dict[str, Any]) -> dict[str, Any]:
        return functions[name].lambda_handler(event, LambdaContext(function_name=name))

    def cid(n: int) -> str:
        return f"{tag}-{n:07d}="

    room = f"{tag}-chat"
    for member in range(ROOM_MEMBERS):
        invoke("join_room", message_event(f"{tag}-m{member}=", f"user{member}", {"type": "join_room", "data": {"roomId": room}}))

    def chat(n: int) -> None:
        frame = {"type": "chat_message", "data": {"roomId": room, "message": f"hello, everyone ({n})"}}
        if json.loads(invoke("chat_message", message_event(f"{tag}-m0=", "user0", frame))["body"])["type"] != "chat_update":
            raise RuntimeError("the benchmark's message was refused")

    def join_leave(n: int) -> None:
        joiner, data = f"{tag}-j{n:07d}=", {"roomId": f"{tag}-joins"}
        invoke("join_room", message_event(joiner, f"joiner{n}", {"type": "join_room", "data": data}))
        invoke("leave_room", message_event(joiner, f"joiner{n}", {"type": "leave_room", "data": data}))

    calls = {
        "authorizer": lambda n: invoke("authorizer", authorizer_event),
        "connect": lambda n: invoke("connect", connect_event(cid(n), "alice", "Alice")),
        "ping": lambda n: invoke("ping", ping),
        "disconnect": lambda n: invoke("disconnect", disconnect_event(cid(n), "alice")),
        "fanout_shard": lambda n: invoke("fanout", shard_event(tag, n)),
        "chat_message": chat,
        "join_leave": join_leave,
    }
    if invoke("authorizer", authorizer_event)["policyDocument"]["Statement"][0]["Effect"] != "Allow":
        raise RuntimeError("the authorizer refused the benchmark's token")
    return calls


def child(tag: str) -> None:
    """One tree's handlers: a round per line on stdin (`calls warmup`), its figures as a JSON line."""
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")
    calls, first = handler_calls(tag), 0
    for line in sys.stdin:
        count, warmup = map(int, line.split())
        figures = {name: measure(call, first, warmup, count) for name, call in calls.items()}
        first += warmup + count
        out.write(json.dumps(figures) + "\n")
        out.flush()


def profile(name: str, calls: int) -> None:
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")
    handlers = handler_calls("profile")
    measure(handlers[name], 0, 100, 0)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: waiting on DynamoDB Local is not the handler's cost
    profiler.enable()
    for n in range(100, 100 + calls):
        handlers[name](n)
    profiler.disable()
    text = io.StringIO()
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(40)
    print(text.getvalue(), file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=150, help="timed calls of each handler per round")
    parser.add_argument("--baseline", type=Path, help="another checkout whose handlers run alongside, in turns")
    parser.add_argument("--profile", choices=HANDLERS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    from parley_local.local_aws.account import aws_client
    from parley_local.local_aws.dynamodb_local import DynamoDBLocal
    from parley_testing.lambda_events import JWT_SECRET
    from parley_testing.template import create_tables_from_template, load_template

    ddb_local = DynamoDBLocal.start()
    ssm = SsmStandIn(JWT_SECRET)
    connections = subprocess.Popen([sys.executable, "-m", "parley_testing.fake_connections_api"], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE)
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        assert connections.stdout is not None
        os.environ.update(AWS_ENDPOINT_URL_DYNAMODB=ddb_local.endpoint, AWS_ENDPOINT_URL_SSM=ssm.url,
                          AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI=connections.stdout.readline().strip())
        trees = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        created: set[str] = set()
        for tree in trees.values():  # each tree's tables (a baseline may have one this tree dropped), each once
            template = load_template(tree / "template.yaml")
            template["Resources"] = {k: v for k, v in template["Resources"].items() if k not in created}
            created |= set(create_tables_from_template(aws_client("dynamodb", ddb_local.endpoint), template, TABLES))
        if args.profile:
            return profile(args.profile, args.calls)
        for tag, tree in trees.items():
            # `-c` from the tree's folder puts that folder first on the import path (Python's own rule for
            # `-c`), so each child imports its tree's parley_testing, and through it that tree's layer and functions.
            run_this_file = f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')"
            children[tag] = subprocess.Popen([sys.executable, "-c", run_this_file, "--child", tag], cwd=tree, text=True,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        rounds: dict[str, list[dict[str, float]]] = {tag: [] for tag in trees}
        for n in range(args.rounds + 1):  # round 0 warms every environment up and is not counted
            for tag in list(trees)[:: 1 if n % 2 else -1]:
                process = children[tag]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(f"{args.calls} {100 if n == 0 else 20}\n")
                process.stdin.flush()
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the {tag} tree's handlers stopped (see above)")
                if n:
                    rounds[tag].append(json.loads(line))
        header = f"{'handler':<13}{'CPU us/call':>12}" + (f"{'baseline':>10}{'this/baseline':>15}" if args.baseline else "")
        print(f"{header}   (median of {args.rounds} rounds of {args.calls} warm calls)")
        for name in HANDLERS:
            mine = [r[name] for r in rounds["this"]]
            row = f"{name:<13}{statistics.median(mine):>12.0f}"
            if args.baseline:
                theirs = [r[name] for r in rounds["baseline"]]
                row += f"{statistics.median(theirs):>10.0f}{statistics.median(m / t for m, t in zip(mine, theirs)):>15.2f}"
            print(row)
    finally:
        for process in children.values():
            if process.stdin:
                process.stdin.close()
            process.wait(30)
        ssm.stop()
        ddb_local.stop()
        connections.kill()
        connections.wait(10)


if __name__ == "__main__":
    main()

"""Large-room delivery and MemorySize, measured at the CPU share Lambda gives each function.

Lambda gives a function MemorySize/1,769 of one vCPU. Each function here runs in a child
process moved into a Linux cgroup-v1 CPU quota of MemorySize/1769 of each CFS period (20 ms, the
throttle interval measured on Lambda by a third party; `PARLEY_CFS_PERIOD_MS` changes it; see
`common.CpuGroup`); AWS's DynamoDB Local and the stand-ins it calls run uncapped in other
processes, as AWS's services do not use the function's CPU. `@connections` answers every post
after `--post-latency-ms` (20); the Lambda Invoke stand-in answers every async Invoke (202)
after `--invoke-latency-ms` (20) and records when it accepted each shard.

Measured parts (warm environments: each child runs its handler once uncapped before timing):
- `chat_message` in a room of 10 and, with sharding on, the dispatching `chat_message` in a room
  of 1,000, at several MemorySizes: the handler's duration, and for the large room when the
  Invoke stand-in accepted each shard (the real `LambdaShardDispatcher`);
- for a room beyond one page (`FanoutPageSize`, 1,000), the continuation the handler handed the
  rest of the room to: the real fan-out function's `run_fanout` on the event the Invoke stand-in
  accepted, at FanoutFunction's share, reading the room's remaining pages, recording their page
  plans and dispatching their shards (when the stand-in accepted each);
- one fan-out shard (`ChatService.run_fanout` on a `ShardJob`: claims in DynamoDB, then the posts) at several
  MemorySizes and shard sizes.

Last post in a large room is *composed*, because this machine has 2 cores and a room of 10,000
is 100 shards that Lambda runs at once in 100 environments of their own, which cannot all run
here at their share at the same time:
    last post = max(handler's shards: accepted_i + invoke start + shard time,
                    the continuation's: continuation accepted + invoke start + its shard j accepted
                                        (from the continuation's start) + invoke start + shard time)
where the handler's times are measured with the handler at its share, the continuation's at
FanoutFunction's, shard time is a shard measured alone at the fan-out function's share (sampled:
every shard of a room is the same work, so the slowest of `--shard-samples` shards stands for
each), and invoke start (`--invoke-start-ms`, 100) is the time Lambda takes from accepting an
async event to starting a warm environment on it, which AWS does not publish: stated, not measured.

Where the cgroup CPU controller is not writable (not Linux, not root, cgroup v2 only) it says so
and exits 0 without figures.

    .venv/bin/python benchmarks/lambda_share_bench.py [--rooms 1000 10000 100000] [--memory-mb 128 256 512 1024 1769] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import (  # sets the benchmark environment before parley is imported
    CFS_PERIOD_US, ConnectionsStandIn, Context, CpuQuota, ServicesGroup, cgroup_unavailable, lambda_usd, memory_size, publish, vcpu_share,
)

FANOUT_FUNCTION = "parley-bench-fanout"
SMALL_ROOM = 10
SIZING_ROOM = 1000
TARGETS_S = {1000: 0.5, 10_000: 3.0}  # issue 12: last post within this long of the handler's start


# ------------------------------------------------------------------ the Lambda Invoke stand-in
class InvokeStandIn:
    """Lambda's Invoke API on 127.0.0.1 (an aiohttp server on its own thread, uncapped): answers
    an async Invoke with 202 after `latency_ms`, and records when it accepted which shard or continuation."""

    def __init__(self, latency_ms: float) -> None:
        self.latency = latency_ms / 1000
        self.accepted: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        threading.Thread(target=self._serve, daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("the Invoke stand-in did not start")

    async def _invoke(self, request: Any) -> Any:
        from aiohttp import web

        event = json.loads(await request.read())
        await asyncio.sleep(self.latency)
        with self._lock:
            record = {"at": time.monotonic(), "delivery_id": event["deliveryId"],
                      "async": request.headers.get("X-Amz-Invocation-Type") == "Event"}
            if "continueAfter" in event:
                record["continuation"] = event
            else:
                record.update(shard=event["shard"], recipients=len(event["recipients"]))
            self.accepted.append(record)
        return web.Response(status=202)

    def _serve(self) -> None:
        from aiohttp import web

        async def start() -> None:
            app = web.Application(client_max_size=8 * 1024 * 1024)
            app.router.add_post("/2015-03-31/functions/{name}/invocations", self._invoke)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def accepted_for(self, delivery_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.accepted if a["delivery_id"] == delivery_id]

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


# ------------------------------------------------------------------ seeding (parent, uncapped)
def seed_room(room: str, members: int, first: int) -> float:
    """`members` memberships, as join_room writes them, by BatchWriteItem from 4 threads."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    from parley.aws.keys import MEMBER_PREFIX
    from parley.aws.tables import Membership
    from parley_testing.lambda_events import connection_id

    started, now, ttl = time.perf_counter(), int(time.time() * 1000), timedelta(seconds=7500)

    def write(span: range) -> None:
        with Membership.batch_write() as batch:
            for n in span:
                cid = connection_id(n)
                batch.save(Membership(room, MEMBER_PREFIX + cid, connection_id=cid, user_id=f"user{n}", name=f"User {n}",
                                      joined_at=now, expires_at=ttl))

    step = 2500
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, [range(s, min(s + step, first + members)) for s in range(first, first + members, step)]))
    return time.perf_counter() - started


# ------------------------------------------------------------------ the children (capped)
def child_chat_message(spec: dict[str, Any]) -> dict[str, Any]:
    """The real `chat_message` handler, as user `first` of each room; warm-up uncapped, then timed at each share."""
    from parley_testing.functions import load_function
    from parley_testing.lambda_events import connection_id, message_event

    chat = load_function("chat_message")
    import parley.aws.lambda_routes as routes

    runs: list[dict[str, Any]] = []
    queries = timed_room_reads(routes._store)

    def invoke(room: str, first: int) -> dict[str, Any]:
        event = message_event(connection_id(first), f"user{first}", {"type": "chat_message", "data": {"roomId": room, "message": "hi"}})
        queries.clear()
        started = time.monotonic()
        response = chat.lambda_handler(event, Context())
        ended = time.monotonic()
        reply = json.loads(response["body"])
        assert reply["type"] == "chat_update", reply
        return {"started": started, "seconds": ended - started, "message_id": reply["data"]["messageId"],
                "status": reply["data"]["status"], "read_room_s": sum(queries)}

    for room, first, sizes, repeat in spec["rooms"]:
        invoke(room, first)  # warm: clients, pools, the lazy boto3 Lambda client
        for memory in sizes:
            with CpuQuota(memory):
                for _ in range(repeat):
                    runs.append({"room": room, "memory_mb": memory, **invoke(room, first)})
    return {"runs": runs}


def timed_room_reads(store: Any) -> list[float]:
    """Record how long each read of a room's memberships takes (how much of a duration is reading the room)."""
    queries: list[float] = []
    read_page = store.room_members_page

    def timed(room_id: str, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return read_page(room_id, **kwargs)
        finally:
            queries.append(time.monotonic() - t0)

    store.room_members_page = timed
    return queries


def child_continuation(spec: dict[str, Any]) -> dict[str, Any]:
    """The fan-out function on the continuations the handler handed out (warm-up uncapped on a
    small room, then each one timed at FanoutFunction's share): it reads the rest of the room,
    records each page's plan and dispatches the page's shards to the Invoke stand-in."""
    import parley.aws.lambda_routes as routes
    from parley.core.ids import new_ulid
    from parley.core.model import RoomContinuation
    from parley_testing.lambda_events import connection_id

    service = routes._service_for_endpoint(os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"])
    queries = timed_room_reads(routes._store)
    room, first = spec["warm"]
    service.run_fanout(RoomContinuation(room, new_ulid(), '{"type":"warm"}', connection_id(first + 1), 1))
    runs = []
    with CpuQuota(spec["memory_mb"]):
        for event in spec["events"]:
            queries.clear()
            started = time.monotonic()
            service.run_fanout(RoomContinuation.from_event(event))
            runs.append({"delivery_id": event["deliveryId"], "started": started, "seconds": time.monotonic() - started,
                         "read_room_s": sum(queries)})
    return {"runs": runs}


def child_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """`run_fanout` of a `ShardJob` (claims included) on slices of a seeded room; warm-up uncapped, then timed at each share."""
    import parley.aws.lambda_routes as routes
    from parley.core.ids import new_ulid
    from parley.core.model import ShardJob
    from parley_testing.lambda_events import connection_id

    service = routes._service_for_endpoint(os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"])
    frame = json.dumps({"type": "message_received", "data": {"roomId": "bench", "messageId": new_ulid(), "userId": "user0",
                                                             "name": "User 0", "message": "hi", "timestamp": "2026-11-28T00:00:00Z"}})

    def deliver(size: int, shard: int) -> float:
        job = ShardJob("bench", new_ulid(), shard, frame, tuple((connection_id(n), f"user{n}") for n in range(size)))
        started = time.perf_counter()
        result = service.run_fanout(job)
        seconds = time.perf_counter() - started
        assert len(result.delivered) == size and not result.failed, result
        return seconds

    deliver(spec["pairs"][0][1], 0)  # warm
    runs = []
    for memory, size in spec["pairs"]:
        with CpuQuota(memory):
            runs.append({"memory_mb": memory, "shard_size": size, "seconds": [deliver(size, n) for n in range(spec["samples"])]})
    return {"runs": runs}


def run_child(kind: str, spec: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(spec)], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the run (parent)
def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from parley_local.local_aws.dynamodb_local import DynamoDBLocal
    from parley_testing.template import create_tables_from_template, load_template

    chat_mb, fanout_mb = memory_size("ChatMessageFunction"), memory_size("FanoutFunction")
    shard_size = int(load_template()["Parameters"]["FanoutShardSize"]["Default"])
    page_size = int(load_template()["Parameters"]["FanoutPageSize"]["Default"])
    api = ConnectionsStandIn(args.post_latency_ms)
    invoke_api = InvokeStandIn(args.invoke_latency_ms)
    database = DynamoDBLocal.start()
    env = {"AWS_ENDPOINT_URL_DYNAMODB": database.endpoint, "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": api.url,
           "AWS_ENDPOINT_URL_LAMBDA": invoke_api.url, "FANOUT_FUNCTION_NAME": FANOUT_FUNCTION,
           "FANOUT_SHARD_SIZE": str(shard_size), "FANOUT_PAGE_SIZE": str(page_size),
           "CHAT_RATE_LIMIT": "1000000"}  # many timed messages from one user
    os.environ.update(env)
    data: dict[str, Any] = {"post_latency_ms": args.post_latency_ms, "invoke_latency_ms": args.invoke_latency_ms,
                            "cfs_period_ms": CFS_PERIOD_US / 1000,
                            "invoke_start_ms": args.invoke_start_ms, "chat_message_mb": chat_mb, "fanout_mb": fanout_mb,
                            "shard_size": shard_size, "page_size": page_size, "memory_sizes": args.memory_mb, "rooms": args.rooms,
                            "shard_samples": args.shard_samples, "repeat": args.repeat, "seed_seconds": {}}
    try:
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        rooms, first = [], 0
        for n in sorted({SMALL_ROOM, SIZING_ROOM, *args.rooms}):
            data["seed_seconds"][n] = seed_room(f"room-{n}", n, first)
            sizes = args.memory_mb if n in (SMALL_ROOM, SIZING_ROOM) else [chat_mb]
            if n not in (SMALL_ROOM, SIZING_ROOM) or chat_mb not in sizes:
                sizes = sorted({*sizes, chat_mb})
            rooms.append([f"room-{n}", first, sizes, args.repeat if n <= SIZING_ROOM * 10 else 1])
            first += n
        print(f"seeded {', '.join(f'{n:,}' for n in data['seed_seconds'])} members "
              f"in {sum(data['seed_seconds'].values()):.1f} s", flush=True)
        chat = run_child("chat_message", {"rooms": rooms}, env, timeout=900)
        handed_on = []
        for r in chat["runs"]:
            accepted = invoke_api.accepted_for(r["message_id"])
            shards = [a for a in accepted if "continuation" not in a]
            r["shards"] = len(shards)
            r["last_accepted_s"] = max((a["at"] - r["started"] for a in shards), default=None)
            r["first_accepted_s"] = min((a["at"] - r["started"] for a in shards), default=None)
            assert all(a["async"] for a in accepted)
            continuations = [a for a in accepted if "continuation" in a]
            assert len(continuations) <= 1, "one continuation per broadcast"
            if continuations:
                r["continuation_accepted_s"] = continuations[0]["at"] - r["started"]
                handed_on.append(continuations[0]["continuation"])
        if handed_on:
            spec = {"memory_mb": fanout_mb, "events": handed_on, "warm": [f"room-{SMALL_ROOM}", rooms[0][1]]}
            continued = {c["delivery_id"]: c for c in run_child("continuation", spec, env, timeout=900)["runs"]}
            for r in chat["runs"]:
                c = continued.get(r["message_id"])
                if c is None:
                    continue
                after = [a for a in invoke_api.accepted_for(r["message_id"]) if a["at"] >= c["started"]]
                r["continuation"] = {"seconds": c["seconds"], "read_room_s": c["read_room_s"], "shards": len(after),
                                     "last_accepted_s": max(a["at"] - c["started"] for a in after)}
        data["chat_message"] = chat["runs"]
        pairs = [[m, shard_size] for m in args.memory_mb] + [[fanout_mb, s] for s in args.shard_sizes if s != shard_size]
        data["shard"] = run_child("shard", {"pairs": pairs, "samples": args.shard_samples}, env, timeout=600)["runs"]
        data["posts"] = api.calls()
    finally:
        database.stop()
        api.stop()
        invoke_api.stop()
    compose(data)
    return data


def compose(data: dict[str, Any]) -> None:
    """The MemorySize table's rows, and last post per large room from the parts measured at their shares."""
    chat_mb, fanout_mb, size = data["chat_message_mb"], data["fanout_mb"], data["shard_size"]
    runs = data["chat_message"]

    def chat_rows(room: int) -> list[dict[str, Any]]:
        rows = []
        for memory in sorted({r["memory_mb"] for r in runs if r["room"] == f"room-{room}"}):
            mine = [r for r in runs if r["room"] == f"room-{room}" and r["memory_mb"] == memory]
            seconds = statistics.median(r["seconds"] for r in mine)
            last = [r["last_accepted_s"] for r in mine if r["last_accepted_s"] is not None]
            rows.append({"memory_mb": memory, "seconds": seconds, "usd_per_m": lambda_usd(memory, seconds) * 1e6,
                         "last_accepted_s": statistics.median(last) if last else None, "shards": mine[0]["shards"]})
        return rows

    shard_by = {(s["memory_mb"], s["shard_size"]): s["seconds"] for s in data["shard"]}
    data["sizing"] = {
        "chat_small": chat_rows(SMALL_ROOM),
        "chat_dispatch": chat_rows(SIZING_ROOM),
        "shard": [{"memory_mb": m, "shard_size": s, "seconds": max(t), "median_s": statistics.median(t),
                   "usd_per_m": SIZING_ROOM / s * lambda_usd(m, statistics.median(t)) * 1e6}
                  for (m, s), t in sorted(shard_by.items())],
    }
    shard_s = max(shard_by[(fanout_mb, size)])
    start_s = data["invoke_start_ms"] / 1000
    rooms = []
    for n in data["rooms"]:
        mine = [r for r in runs if r["room"] == f"room-{n}" and r["memory_mb"] == chat_mb]
        composed = sorted(last_post(r, start_s, shard_s) for r in mine)
        last = composed[len(composed) // 2]
        target = TARGETS_S.get(n)
        handed_on = [r for r in mine if "continuation" in r]

        def med(values: Any) -> float | None:
            values = list(values)
            return statistics.median(values) if values else None

        shards = mine[0]["shards"] + (handed_on[0]["continuation"]["shards"] if handed_on else 0)
        continuation_s = med(r["continuation"]["seconds"] for r in handed_on)
        rooms.append({"members": n, "shards": shards, "handler_shards": mine[0]["shards"],
                      "handler_s": statistics.median(r["seconds"] for r in mine),
                      "read_room_s": statistics.median(r["read_room_s"] for r in mine),
                      "last_accepted_s": statistics.median(r["last_accepted_s"] for r in mine), "shard_s": shard_s,
                      "continuation_accepted_s": med(r["continuation_accepted_s"] for r in handed_on),
                      "continuation_s": continuation_s,
                      "continuation_read_s": med(r["continuation"]["read_room_s"] for r in handed_on),
                      "continuation_last_accepted_s": med(r["continuation"]["last_accepted_s"] for r in handed_on),
                      "last_post_s": last, "runs": len(mine), "target_s": target,
                      "met": None if target is None else last <= target,
                      "lambda_usd_per_m": (lambda_usd(chat_mb, statistics.median(r["seconds"] for r in mine))
                                           + (lambda_usd(fanout_mb, continuation_s) if continuation_s else 0)
                                           + shards * lambda_usd(fanout_mb, shard_s)) * 1e6})
    data["end_to_end"] = rooms


def last_post(run: dict[str, Any], start_s: float, shard_s: float) -> float:
    """When the last member is posted to, from the handler's start: the later of its own page's last
    shard and the continuation's last shard (the continuation starts an invoke start after it was
    accepted, and each of its shards an invoke start after it accepted that one)."""
    handler = run["last_accepted_s"] + start_s + shard_s if run["last_accepted_s"] is not None else 0.0
    if "continuation" not in run:
        return handler
    continued = run["continuation_accepted_s"] + start_s + run["continuation"]["last_accepted_s"] + start_s + shard_s
    return max(handler, continued)


def report(data: dict[str, Any]) -> str:
    if "skipped" in data:
        return f"skipped: {data['skipped']}; a Lambda CPU share cannot be imposed here"
    s = data["sizing"]
    lines = [f"At Lambda's CPU share (MemorySize/1769 of a vCPU; DynamoDB Local and the stand-ins uncapped; "
             f"+{data['post_latency_ms']:g} ms per post, +{data['invoke_latency_ms']:g} ms per Invoke)"]
    lines.append(f"chat_message, room of {SMALL_ROOM}:")
    lines += [f"  {r['memory_mb']:5d} MB ({vcpu_share(r['memory_mb']):.3f} vCPU) {r['seconds'] * 1000:7.1f} ms  ${r['usd_per_m']:.2f}/M"
              for r in s["chat_small"]]
    lines.append(f"chat_message dispatching a room of {SIZING_ROOM:,} ({s['chat_dispatch'][0]['shards']} shards):")
    lines += [f"  {r['memory_mb']:5d} MB {r['seconds'] * 1000:7.1f} ms, last shard accepted at {r['last_accepted_s'] * 1000:6.1f} ms  "
              f"${r['usd_per_m']:.2f}/M" for r in s["chat_dispatch"]]
    lines.append("fan-out shard (slowest of the samples; $ per million messages to a room of 1,000):")
    lines += [f"  {r['memory_mb']:5d} MB, {r['shard_size']:4d} connections: {r['seconds'] * 1000:7.1f} ms "
              f"(median {r['median_s'] * 1000:.1f})  ${r['usd_per_m']:.2f}/M" for r in s["shard"]]
    lines.append(f"Last post, composed: chat_message at {data['chat_message_mb']} MB, shards of {data['shard_size']} at "
                 f"{data['fanout_mb']} MB, +{data['invoke_start_ms']:g} ms from an accepted event to a warm shard's start")
    for r in data["end_to_end"]:
        verdict = "report" if r["target_s"] is None else f"target {r['target_s']:g} s: {'met' if r['met'] else 'NOT met'}"
        continued = ("" if r["continuation_s"] is None else
                     f"; continuation accepted {r['continuation_accepted_s']:.3f} s, ran {r['continuation_s']:.3f} s at "
                     f"{data['fanout_mb']} MB (reading {r['continuation_read_s']:.3f} s), its last shard accepted "
                     f"{r['continuation_last_accepted_s']:.3f} s after its start")
        lines.append(f"  {r['members']:7,} members, {r['shards']:4d} shards: handler {r['handler_s']:.3f} s (reading the room "
                     f"{r['read_room_s']:.3f} s), its last shard accepted {r['last_accepted_s']:.3f} s{continued}; "
                     f"+ {data['invoke_start_ms'] / 1000:.3f} s per invoke start + shard {r['shard_s']:.3f} s = "
                     f"last post {r['last_post_s']:.3f} s ({verdict})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--memory-mb", type=int, nargs="+", default=[128, 256, 512, 1024, 1769])
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[50, 100, 200, 400],
                        help="shard sizes measured at FanoutFunction's MemorySize")
    parser.add_argument("--shard-samples", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="timed messages per room and size (rooms above 10,000: 1)")
    parser.add_argument("--post-latency-ms", type=float, default=20.0)
    parser.add_argument("--invoke-latency-ms", type=float, default=20.0)
    parser.add_argument("--invoke-start-ms", type=float, default=100.0)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        children = {"chat_message": child_chat_message, "continuation": child_continuation, "shard": child_shard}
        print(json.dumps(children[kind](json.loads(spec))))
        return
    why_not = cgroup_unavailable()
    if why_not:
        data: dict[str, Any] = {"skipped": why_not}
    else:
        with ServicesGroup():
            data = run(args)
    publish(report(data), data, args.json)


if __name__ == "__main__":
    main()

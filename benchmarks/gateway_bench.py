"""Benchmark of the local gateway (`parley dev`) running the real template.yaml and handlers.

Prints figures (markdown) for:
1. `ping` round-trip time through the gateway vs a bare `websockets` echo server, same run;
2. N concurrent connections (default 1000) opened through the authorizer and `$connect`, each served a `ping`;
3. fan-out of one `chat_message` to a room of N connections with `--post-latency-ms` (default 20).

Usage: .venv/bin/python benchmarks/gateway_bench.py [--connections 1000] [--pings 300] [--post-latency-ms 20]
Every wait is bounded; the gateway runs as a subprocess on a free 127.0.0.1 port and is stopped with SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.server import serve

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from parley_local.tokens import make_token  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} | {pct(values, 50):.2f} | {pct(values, 95):.2f} | {pct(values, 99):.2f}"


async def rtt(url: str, payload: str, n: int, expect: str | None) -> list[float]:
    async with websockets.connect(url, open_timeout=30, compression=None) as ws:
        out = []
        for i in range(n + 20):
            t = time.perf_counter()
            await ws.send(payload)
            reply = await asyncio.wait_for(ws.recv(), 10)
            if expect and expect not in reply:
                raise RuntimeError(f"unexpected reply {reply[:200]}")
            if i >= 20:  # warm-up excluded
                out.append((time.perf_counter() - t) * 1000)
        return out


async def recv_until(ws: Any, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if frame.get("type") == kind:
            return frame


def seed_room(endpoint: str, room: str) -> int:
    """Put every open `listener` connection (from the connections table) into `room`."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    names = ddb.list_tables()["TableNames"]
    stack = f"bench{os.getpid()}-"
    conn_table = next(n for n in names if n.startswith(stack) and n.endswith("ConnectionsTable"))
    member_table = next(n for n in names if n.startswith(stack) and n.endswith("MembershipsTable"))
    ids = [
        item["connectionId"]["S"]
        for page in ddb.get_paginator("scan").paginate(TableName=conn_table)
        for item in page["Items"]
        if item.get("userId", {}).get("S") == "listener"
    ]
    now = int(time.time())
    items = [
        {"PutRequest": {"Item": {
            "roomId": {"S": room}, "memberKey": {"S": f"c#{cid}"}, "connectionId": {"S": cid},
            "userId": {"S": "listener"}, "name": {"S": "Listener"},
            "joinedAt": {"N": str(now * 1000)},
            "expiresAt": {"N": str(now + 7500)},
        }}}
        for cid in ids
    ]
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={member_table: items[i : i + 25]})
    return len(items)


async def bench(args: argparse.Namespace) -> None:
    port = free_port()
    log = open(args.log, "w")
    cmd = [sys.executable, "-m", "parley_local.cli", "dev", "--port", str(port), "--post-latency-ms", str(args.post_latency_ms),
           "--stack-name", f"bench{os.getpid()}", "--quiet"]
    if args.dynamodb_endpoint:
        cmd += ["--dynamodb-endpoint", args.dynamodb_endpoint]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started = time.monotonic()
    url = None
    ddb_endpoint = ""
    while time.monotonic() - started < 120:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("parley dev exited:\n" + log.name)
        log.write(line)
        d = re.match(r"\s+DynamoDB:\s+(http://\S+)", line)
        if d:
            ddb_endpoint = d.group(1)
        m = re.match(r"Ready on (ws://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        raise SystemExit("parley dev did not become ready within 120 s")
    startup = time.monotonic() - started
    asyncio.get_running_loop().run_in_executor(None, lambda: [log.write(x) for x in proc.stdout])

    async def echo(ws: Any) -> None:
        async for msg in ws:
            await ws.send(msg)

    rows: list[str] = []
    try:
        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            echo_url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ping = json.dumps({"type": "ping"})
            base = await rtt(echo_url, ping, args.pings, None)
            through = await rtt(f"{url}?token={make_token('pinger')}", ping, args.pings, '"pong"')
        rows.append(f"| ping RTT, bare websockets echo server | {args.pings} | {summary(base)} |")
        rows.append(f"| ping RTT through the gateway (`ping` Lambda, route response) | {args.pings} | {summary(through)} |")

        # N concurrent connections, all one user so that joins announce nothing (no N^2 user_joined storm).
        token = make_token("listener", "Listener", 3600)
        sem = asyncio.Semaphore(args.open_concurrency)
        errors: list[str] = []

        async def open_one() -> Any:
            async with sem:
                try:
                    return await websockets.connect(f"{url}?token={token}", open_timeout=60, compression=None, max_queue=None)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(type(exc).__name__)
                    return None

        t = time.perf_counter()
        conns = [c for c in await asyncio.gather(*(open_one() for _ in range(args.connections))) if c is not None]
        open_s = time.perf_counter() - t

        async def ping_one(ws: Any) -> bool:
            await ws.send(ping)
            return (await recv_until(ws, "pong", 60))["type"] == "pong"

        t = time.perf_counter()
        pongs = sum(await asyncio.gather(*(ping_one(c) for c in conns)))
        ping_s = time.perf_counter() - t
        rows.append(f"| {args.connections} connections opened (authorizer + `$connect`), {len(errors)} errors | {len(conns)} | {open_s:.2f} s total | | | |")
        rows.append(f"| one `ping` on each open connection at once | {pongs} pongs | {ping_s:.2f} s total | | | |")

        # Real joins for latency (a join reads the whole room: O(members) in moto), then the big
        # room is seeded straight into the embedded DynamoDB with the membership items ARCHITECTURE.md
        # documents, because N joins through moto would take O(N^2) time on a laptop.
        join_room = f"joins-{int(time.time())}"
        join_ms: list[float] = []
        for c in conns[: args.joins]:
            t = time.perf_counter()
            await c.send(json.dumps({"type": "join_room", "data": {"roomId": join_room, "limit": 1}}))
            await recv_until(c, "chat_history", 60)
            join_ms.append((time.perf_counter() - t) * 1000)
        rows.append(f"| `join_room`, sequential, room growing to {len(join_ms)} connections | {len(join_ms)} | {summary(join_ms)} |")

        room = f"bench-{int(time.time())}"
        seeded = await asyncio.to_thread(seed_room, ddb_endpoint, room)
        sender = await websockets.connect(f"{url}?token={make_token('sender', 'Sender')}", open_timeout=60)
        await sender.send(json.dumps({"type": "join_room", "data": {"roomId": room, "limit": 1}}))
        await recv_until(sender, "chat_history", 120)
        for c in conns:  # drain user_joined for the sender
            await recv_until(c, "user_joined", 120)

        arrivals: list[float] = []

        async def receive(ws: Any, t0_ref: list[float]) -> None:
            await recv_until(ws, "message_received", 120)
            arrivals.append((time.perf_counter() - t0_ref[0]) * 1000)

        t0 = [0.0]
        waiters = [asyncio.create_task(receive(c, t0)) for c in conns]
        t0[0] = time.perf_counter()
        await sender.send(json.dumps({"type": "chat_message", "data": {"roomId": room, "message": "fan-out"}}))
        update = await recv_until(sender, "chat_update", 120)
        done_ms = (time.perf_counter() - t0[0]) * 1000
        await asyncio.wait_for(asyncio.gather(*waiters), 120)
        rows.append(f"| room seeded with {seeded} memberships | | | | | |")
        rows.append(
            f"| fan-out of one `chat_message` to {len(conns)} connections, post latency {args.post_latency_ms:g} ms: "
            f"first / median / last arrival, `chat_update` ({update['data'].get('deliveredTo')} delivered) after {done_ms:.0f} ms "
            f"| {len(arrivals)} | {min(arrivals):.0f} | {pct(arrivals, 50):.0f} | {max(arrivals):.0f} | |"
        )
        await sender.close()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"parley dev started in {startup:.1f} s (real template.yaml, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n")
    print("| measurement | n | mean ms | p50 ms | p95 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--post-latency-ms", type=float, default=20)
    parser.add_argument("--open-concurrency", type=int, default=50)
    parser.add_argument("--joins", type=int, default=50, help="real join_room calls timed (into a separate room)")
    parser.add_argument("--dynamodb-endpoint", default=None, help="e.g. a separate moto_server or DynamoDB Local")
    parser.add_argument("--log", default="/tmp/parley-gateway-bench.log")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
